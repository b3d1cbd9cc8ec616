"""The statistics and the text table of a comparison (`compare.run_compare`'s raw result).

This module owns `summarize` (per strategy: mean ± std of the retrained networks' final test
accuracy, of the rank-1 network's, of the best selection score found, of the device-seconds
spent; the epochs spent, which must be equal; the best-so-far curves on a common budget grid)
and `format_table`. It computes from the result dict alone; the figures are
`study.compare_figures`'s job. Standard library and numpy only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["budget_grid", "curve_at", "format_table", "mean_std", "summarize"]

DEFINITIONS = {
    "budget": "epochs of proxy training, one epoch of one network at the proxy setting; a "
    "hierarchical segment of k epochs costs k; every strategy stops before exceeding it",
    "device_s": "the trainer's wall seconds summed over a search's segments (reported, not "
    "equalised)",
    "score": "selection accuracy (%) on the held-out split at the end of a network's schedule",
    "final_test_acc": "test accuracy (%) after retraining in retrain_setting on the same data",
    "econas": "hierarchical EcoNAS: P20/P40/P60 pools, the best networks continue to the next "
    "segment of one schedule",
    "single": "single proxy: every network trains the whole schedule at once, one pool, "
    "tournament and mutation as EcoNAS",
    "random": "random sampling: distinct random genotypes, each trained the whole schedule",
}


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def mean_std(values: Iterable[float | None]) -> dict[str, Any]:
    """{"mean", "std" (sample, 0.0 for one value), "n"} of the finite values; None when empty."""
    data = _finite(values)
    if not data:
        return {"mean": None, "std": None, "n": 0}
    std = statistics.stdev(data) if len(data) > 1 else 0.0
    return {"mean": statistics.fmean(data), "std": std, "n": len(data)}


def budget_grid(budget: int, step: int) -> list[int]:
    """Epoch budgets at which the curves are read: step, 2 step, ..., budget."""
    return list(range(step, budget + 1, step))


def curve_at(curve: Sequence[Sequence[Any]], epochs: int, column: int) -> float | None:
    """The curve's `column` at the last row with at most `epochs` spent (None before any)."""
    value = None
    for row in curve:
        if row[0] > epochs:
            break
        value = row[column]
    return value


def _strategy_stats(runs: list[Mapping[str, Any]], grid: list[int]) -> dict[str, Any]:
    tops = [row for run in runs for row in run["top"]]
    firsts = [run["top"][0]["final_test_acc"] if run["top"] else None for run in runs]
    curves = {
        "epochs": grid,
        "best_score": [mean_std(curve_at(r["curve"], g, 2) for r in runs) for g in grid],
        "incumbent_test_acc": [mean_std(curve_at(r["curve"], g, 3) for r in runs) for g in grid],
    }
    return {
        "final_test_acc": mean_std(row["final_test_acc"] for row in tops),
        "top1_final_test_acc": mean_std(firsts),
        "best_score": mean_std(run["top"][0]["score"] if run["top"] else None for run in runs),
        "epochs": sorted({run["epochs"] for run in runs}),
        "device_s": mean_std(run["device_s"] for run in runs),
        "networks": mean_std(run["networks"] for run in runs),
        "found": mean_std(run["found"] for run in runs),
        "retrain_device_s": mean_std(row["retrain_device_s"] for row in tops),
        "curve": curves,
    }


def summarize(raw: Mapping[str, Any], proxy_epochs: int) -> dict[str, Any]:
    """`raw` plus "strategies" (per strategy `_strategy_stats`), "budget_equal" (every search
    spent the same epochs) and "definitions"; `proxy_epochs` (e) spaces the curve grid."""
    cfg = raw["config"]
    grid = budget_grid(cfg["budget_epochs"], proxy_epochs)
    by_strategy: dict[str, list[Mapping[str, Any]]] = {}
    for run in raw["runs"]:
        by_strategy.setdefault(run["strategy"], []).append(run)
    spent = {run["epochs"] for run in raw["runs"]}
    return {
        **raw,
        "budget_epochs": cfg["budget_epochs"],
        "budget_equal": len(spent) == 1,
        "strategies": {name: _strategy_stats(runs, grid) for name, runs in by_strategy.items()},
        "definitions": DEFINITIONS,
    }


def _pm(stats: Mapping[str, Any], digits: int = 2) -> str:
    if stats["mean"] is None:
        return "-"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f} (n={stats['n']})"


def format_table(summary: Mapping[str, Any]) -> str:
    """Fixed-width text: one row per strategy."""
    cfg = summary["config"]
    lines = [
        f"budget {summary['budget_epochs']} proxy epochs per search at {cfg['search']['setting']}"
        f" on {cfg['search']['dataset']}, seeds {list(cfg['seeds'])}, top {cfg['top']} "
        f"retrained at {cfg['retrain_setting']}; equal budgets: {summary['budget_equal']}",
        f"{'strategy':<9}{'final test acc %':>28}{'rank-1 test acc %':>28}"
        f"{'best score %':>28}{'device-s':>26}{'networks':>10}",
    ]
    for name, s in summary["strategies"].items():
        lines.append(
            f"{name:<9}{_pm(s['final_test_acc']):>28}{_pm(s['top1_final_test_acc']):>28}"
            f"{_pm(s['best_score']):>28}{_pm(s['device_s'], 0):>26}"
            f"{s['networks']['mean'] or 0:>10.1f}"
        )
    lines.append(f"wall time {summary['wall_s']:.0f} s")
    return "\n".join(lines)
