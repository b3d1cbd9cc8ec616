"""Figures of one search run, PNG and SVG: what `econas-hpc report` draws.

This module owns the four run plots: the best score of each pool against the cycle, the
proxy-rank Spearman values per cycle (with the run's warning threshold), every network's score
against its parameter count with the Pareto front, and the segments and device-hours of each
cycle. It only draws the `search.history.RunHistory` it is given (it never reads state files);
the canvas and the atomic writer are `econas_hpc.plotting`'s. A plot with nothing to show yet
(a run in its first cycle, a dry run without parameter counts) still writes its files, with a
note in place of the data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from econas_hpc.plotting import new_figure, note, save_figure
from econas_hpc.records import POOL_NAMES
from econas_hpc.search.history import RunHistory

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FIGURE_STEMS",
    "SIZE_IN",
    "plot_cost",
    "plot_pool_best",
    "plot_proxy_rank",
    "plot_run",
    "plot_score_params",
]

SIZE_IN = (8.0, 5.0)  # 800 x 500 px, every run figure
FIGURE_STEMS = ("pool_best", "proxy_rank", "score_vs_params", "cost")
POOL_COLORS = {"P20": "tab:blue", "P40": "tab:orange", "P60": "tab:green"}
FRONT_COLOR = "tab:red"


def _cycle_axis(ax: Axes, cycles: Sequence[int]) -> None:
    """Integer ticks at the cycles drawn; the initial population (-1) reads "init"."""
    shown = sorted(set(cycles))
    step = max(1, math.ceil(len(shown) / 20))  # at most ~20 labels
    ticks = shown[::step]
    ax.set_xticks(ticks, ["init" if c < 0 else str(c) for c in ticks])
    ax.set_xlabel("cycle")
    ax.grid(True, alpha=0.3)


def _title(ax: Axes, history: RunHistory, what: str) -> None:
    state = "complete" if history.complete else "in progress"
    dry = ", dry run" if history.dry_run else ""
    of = f"{history.cycle} of {history.cycles_total} cycles, {state}{dry}"
    ax.set_title(f"{what} ({of})", fontsize=10)


def _footnote(fig: Figure, score_kind: str) -> None:
    if score_kind:
        fig.supxlabel(score_kind, fontsize=7, color="gray")


def plot_pool_best(history: RunHistory, out_dir: Path, score_kind: str = "") -> list[Path]:
    """The best score in P20, P40 and P60 at the start of each cycle; pool_best.png/.svg.
    `score_kind` (what a score is) goes under the plot."""
    fig = new_figure(SIZE_IN)
    _footnote(fig, score_kind)
    ax = fig.add_subplot()
    points = history.pools
    drawn = False
    for k, pool in enumerate(POOL_NAMES):
        xy = [(p.cycle, p.best[k]) for p in points if math.isfinite(p.best[k])]
        if xy:
            xs, ys = zip(*xy, strict=True)
            ax.plot(xs, ys, marker="o", color=POOL_COLORS[pool], label=pool)
            drawn = True
    if drawn:
        _cycle_axis(ax, [p.cycle for p in points])
        ax.set_ylabel("best score in the pool (%)")
        ax.legend(loc="lower right", fontsize=8)
    else:
        note(ax, "no pool has a scored network yet")
    _title(ax, history, "best score per pool at the start of each cycle")
    return save_figure(fig, Path(out_dir), "pool_best")


def plot_proxy_rank(history: RunHistory, out_dir: Path) -> list[Path]:
    """Spearman P20~P40 and P40~P60 as stored when each cycle finished; proxy_rank.png/.svg."""
    fig = new_figure(SIZE_IN)
    ax = fig.add_subplot()
    points = history.proxy_rank
    series = (("P20~P40", [p.p20_p40 for p in points]), ("P40~P60", [p.p40_p60 for p in points]))
    drawn = False
    for (label, values), color in zip(series, ("tab:blue", "tab:green"), strict=True):
        xy = [(p.cycle, v) for p, v in zip(points, values, strict=True) if math.isfinite(v)]
        if xy:
            xs, ys = zip(*xy, strict=True)
            ax.plot(xs, ys, marker="o", color=color, label=f"Spearman {label}")
            drawn = True
    if drawn:
        ax.axhline(history.proxy_rank_warn, color="gray", linestyle=":", linewidth=1)
        ax.text(
            0.01,
            history.proxy_rank_warn,
            "warning threshold",
            color="gray",
            fontsize=7,
            transform=ax.get_yaxis_transform(),
            va="bottom",
        )
        _cycle_axis(ax, [p.cycle for p in points])
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(r"Spearman $\rho$ (all networks so far)")
        ax.legend(loc="lower right", fontsize=8)
    else:
        note(ax, "no finished cycle has 3 networks with both scores yet")
    _title(ax, history, "proxy rank consistency")
    return save_figure(fig, Path(out_dir), "proxy_rank")


def plot_score_params(history: RunHistory, out_dir: Path, score_kind: str = "") -> list[Path]:
    """Each network's latest score against its parameters, by pool, with the Pareto front of
    the fully trained ones (higher score, fewer parameters); score_vs_params.png/.svg."""
    fig = new_figure(SIZE_IN)
    _footnote(fig, score_kind)
    ax = fig.add_subplot()
    nets = [n for n in history.networks if n.params is not None]
    if not nets:
        why = "a dry run measures no parameters" if history.dry_run else "no network scored yet"
        note(ax, f"no parameter counts: {why}")
        _title(ax, history, "score against parameters")
        return save_figure(fig, Path(out_dir), "score_vs_params")
    for pool in POOL_NAMES:
        group = [n for n in nets if n.pool == pool]
        if group:
            xs = [n.params or 0 for n in group]
            ax.scatter(
                xs, [n.score for n in group], s=18, c=POOL_COLORS[pool], label=pool, zorder=3
            )
    front = sorted((n for n in nets if n.on_front), key=lambda n: n.params or 0)
    if front:
        ax.step(
            [n.params or 0 for n in front],
            [n.score for n in front],
            where="post",
            color=FRONT_COLOR,
            marker="D",
            markerfacecolor="none",
            markersize=9,
            label="Pareto front (fully trained)",
        )
    ax.set_xlabel("parameters")
    ax.set_ylabel("latest score (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    _title(ax, history, "score against parameters")
    return save_figure(fig, Path(out_dir), "score_vs_params")


def plot_cost(history: RunHistory, out_dir: Path) -> list[Path]:
    """Segments concluded (done / failed) and still open per cycle as bars, device-hours as a
    line on the right axis; cost.png/.svg."""
    fig = new_figure(SIZE_IN)
    ax = fig.add_subplot()
    points = history.cost
    if not points:
        note(ax, "nothing planned yet")
        _title(ax, history, "segments and device-hours per cycle")
        return save_figure(fig, Path(out_dir), "cost")
    xs = [p.cycle for p in points]
    done, failed = [p.done for p in points], [p.failed for p in points]
    ax.bar(xs, done, color="tab:blue", label="segments done")
    ax.bar(xs, failed, bottom=done, color="tab:red", label="failed")
    bottom = [d + f for d, f in zip(done, failed, strict=True)]
    ax.bar(xs, [p.open for p in points], bottom=bottom, color="lightgray", label="open")
    ax.set_ylabel("segments")
    ax.set_ylim(0, 1.25 * max(max(p.planned for p in points), 1))  # room for the legend
    _cycle_axis(ax, xs)
    hours = ax.twinx()
    hours.plot(xs, [p.device_hours for p in points], color="black", marker="o", label="device-h")
    hours.set_ylabel("device-hours")
    hours.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = hours.get_legend_handles_labels()
    ax.legend(handles + more, labels + more_labels, loc="upper left", fontsize=8)
    _title(ax, history, "segments and device-hours per cycle")
    return save_figure(fig, Path(out_dir), "cost")


def plot_run(history: RunHistory, out_dir: Path, score_kind: str = "") -> list[Path]:
    """All four run figures (`FIGURE_STEMS` order), PNG then SVG each; returns the paths.
    `score_kind` (what a score is, `scores.score_meaning`) goes under the score plots."""
    paths = plot_pool_best(history, out_dir, score_kind)
    paths += plot_proxy_rank(history, out_dir)
    paths += plot_score_params(history, out_dir, score_kind)
    return paths + plot_cost(history, out_dir)
