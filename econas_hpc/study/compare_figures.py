"""The figure of a strategy comparison (`econas-hpc compare --out DIR`), as PNG and SVG.

This module owns one figure in three panels, drawn from `bench.compare_report.summarize`'s
dict alone: best-so-far selection score against the epoch budget (mean ± std over seeds), the
incumbent's test accuracy against device-seconds (one line per search), and the final test
accuracy of each strategy's retrained top networks (every network a dot, mean ± std a bar).
The canvas and the writer are `plotting`'s (PNG and SVG, atomic); this module never imports
matplotlib itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from econas_hpc.plotting import new_figure, save_figure

__all__ = ["write_compare_figures"]

SIZE_IN = (15.0, 4.6)  # 1500 x 460 px
COLOURS = {"econas": "tab:green", "single": "tab:orange", "random": "tab:blue"}


def _nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _budget_panel(ax: Any, summary: Mapping[str, Any]) -> None:
    for name, stats in summary["strategies"].items():
        curve = stats["curve"]
        x = curve["epochs"]
        mean = [_nan(p["mean"]) for p in curve["best_score"]]
        std = [_nan(p["std"]) for p in curve["best_score"]]
        colour = COLOURS.get(name)
        ax.plot(x, mean, marker="o", ms=3, color=colour, label=name)
        lo = [m - s for m, s in zip(mean, std, strict=True)]
        hi = [m + s for m, s in zip(mean, std, strict=True)]
        ax.fill_between(x, lo, hi, color=colour, alpha=0.15)
    ax.set_xlabel("budget spent (proxy epochs)")
    ax.set_ylabel("best selection score so far (%)")
    ax.set_title("best-so-far vs budget (mean ± std over seeds)")
    ax.legend(loc="lower right")


def _device_panel(ax: Any, summary: Mapping[str, Any]) -> None:
    seen: set[str] = set()
    for run in summary["runs"]:
        name = run["strategy"]
        xs = [row[1] for row in run["curve"]]
        ys = [_nan(row[3]) for row in run["curve"]]
        label = name if name not in seen else None
        seen.add(name)
        ax.step(xs, ys, where="post", color=COLOURS.get(name), alpha=0.8, label=label)
    ax.set_xlabel("device-seconds spent")
    ax.set_ylabel("incumbent's proxy test accuracy (%)")
    ax.set_title("incumbent vs device time (one line per search)")
    ax.legend(loc="lower right")


def _final_panel(ax: Any, summary: Mapping[str, Any]) -> None:
    names = list(summary["strategies"])
    for index, name in enumerate(names):
        runs = [r for r in summary["runs"] if r["strategy"] == name]
        values = [row["final_test_acc"] for r in runs for row in r["top"]]
        values = [v for v in values if v is not None]
        colour = COLOURS.get(name)
        ax.scatter([index] * len(values), values, color=colour, alpha=0.6, s=18)
        stats = summary["strategies"][name]["final_test_acc"]
        if stats["mean"] is not None:
            ax.errorbar(
                [index + 0.15],
                [stats["mean"]],
                yerr=[stats["std"]],
                fmt="s",
                color=colour,
                capsize=4,
            )
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylabel("final test accuracy after retraining (%)")
    retrain = summary["config"]["retrain_setting"]
    ax.set_title(f"top-{summary['config']['top']} retrained at {retrain}")


def write_compare_figures(
    summary: Mapping[str, Any], out_dir: Path, stem: str = "compare"
) -> list[Path]:
    """Draw the three panels; write `out_dir/stem.png` and `.svg`; return their paths."""
    fig = new_figure(SIZE_IN)
    axes = fig.subplots(1, 3)
    _budget_panel(axes[0], summary)
    _device_panel(axes[1], summary)
    _final_panel(axes[2], summary)
    cfg = summary["config"]["search"]
    fig.suptitle(
        f"EcoNAS vs single proxy vs random at {summary['budget_epochs']} proxy epochs per search "
        f"({cfg['setting']} on {cfg['dataset']})"
    )
    return save_figure(fig, out_dir, stem)
