"""Figures of the proxy-reliability study, written as PNG and SVG (supplement Figure A3 style).

This module owns the three study plots: rho_sp against acceleration ratio, rho_sp along each
factor line (rho_e in the legend), and the per-network accuracy scatter of one setting against
the reference. It only draws what it is given: metrics come from `study.metrics`, and it never
reads state files.

The canvas and the atomic PNG/SVG writer are `econas_hpc.plotting`'s (matplotlib is imported
only when a figure is drawn). Pixel sizes are fixed (no tight bbox): a PNG is `figsize x DPI`
pixels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from econas_hpc.plotting import DPI as DPI  # the figure tests size PNGs with it
from econas_hpc.plotting import new_figure, note, save_figure
from econas_hpc.search.pareto import pareto_front
from econas_hpc.study.metrics import (
    Values,
    entropy,
    factor_level,
    spearman,
    tolerant_spearman,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

RHO_ACC_SIZE_IN = (8.0, 5.0)  # 800 x 500 px
FACTOR_LINES_SIZE_IN = (10.0, 7.0)  # 1000 x 700 px
SCATTER_SIZE_IN = (6.0, 5.0)  # 600 x 500 px
ALL_COLOR, GOOD_COLOR, ADOPTED_COLOR = "tab:blue", "tab:orange", "tab:green"  # as in Fig. A3
_SAFE_STEM = re.compile(r"^[A-Za-z0-9_.-]+$")


def _classify(
    rows: Sequence[tuple[str, float, float]], threshold: float | None, adopted: str
) -> list[str]:
    """Colour of each row: adopted (green) > good (orange: Pareto or >= threshold) > all (blue)."""
    front = set(pareto_front([(rho, acc) for _, rho, acc in rows]))
    colors = []
    for i, (name, rho, _) in enumerate(rows):
        if name == adopted:
            colors.append(ADOPTED_COLOR)
        elif i in front or (threshold is not None and rho >= threshold):
            colors.append(GOOD_COLOR)
        else:
            colors.append(ALL_COLOR)
    return colors


def plot_rho_vs_acceleration(
    rows: Sequence[tuple[str, float, float]],
    out_dir: Path,
    highlight_threshold: float | None = None,
    adopted: str = "c4r4s0e60",
) -> list[Path]:
    """Plot rho_sp (y) against acceleration ratio (x, log scale), one labelled point per setting.

    Args:
        rows: (setting, rho_sp, acceleration ratio) per setting; rows with a non-finite rho or a
            non-positive acceleration cannot be placed and are left out.
        out_dir: folder for rho_vs_acceleration.png (800 x 500 px) and .svg.
        highlight_threshold: settings with rho_sp >= this are also "good" (orange), besides
            the Pareto front of (higher rho_sp, higher acceleration).
        adopted: the setting marked green (EcoNAS's proxy by default).

    Returns:
        The written paths, PNG first.
    """
    valid = [
        (str(name), float(rho), float(acc))
        for name, rho, acc in rows
        if np.isfinite(rho) and np.isfinite(acc) and acc > 0
    ]
    fig = new_figure(RHO_ACC_SIZE_IN)
    ax = fig.add_subplot()
    if not valid:
        note(ax, "no setting with a finite rho_sp and a positive acceleration")
        return save_figure(fig, Path(out_dir), "rho_vs_acceleration")
    colors = _classify(valid, highlight_threshold, adopted)
    labels = {ALL_COLOR: "all settings", GOOD_COLOR: "good settings", ADOPTED_COLOR: "adopted"}
    for color, label in labels.items():
        pts = [(acc, rho) for (_, rho, acc), c in zip(valid, colors, strict=True) if c == color]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.scatter(xs, ys, c=color, label=label, s=36, zorder=3)
    for name, rho, acc in valid:
        ax.annotate(name, (acc, rho), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if highlight_threshold is not None:
        ax.axhline(highlight_threshold, color="gray", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("acceleration ratio (log scale)")
    ax.set_ylabel(r"$\rho_{sp}$")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return save_figure(fig, Path(out_dir), "rho_vs_acceleration")


def _line_label(line: Sequence[tuple[str, float]], factor: str) -> str:
    """'c*r4s0e60 (rho_e=+1.00)': the fixed factors, and the line's monotonicity."""
    first = line[0][0]
    fixed = "".join(
        f"{f}*" if f == factor else f"{f}{factor_level(first, f)}" for f in ("c", "r", "s", "e")
    )
    rho_e = entropy([rho for _, rho in line]) if all(np.isfinite(r) for _, r in line) else None
    shown = "n/a" if rho_e is None or not np.isfinite(rho_e) else f"{rho_e:+.2f}"
    return rf"{fixed} ($\rho_e$={shown})"


def _draw_factor(
    ax: Axes, factor: str, factor_lines: Sequence[Sequence[tuple[str, float]]]
) -> None:
    # Increasing subscript, the order rho_e is computed in (supplement D).
    levels = sorted({factor_level(s, factor) for line in factor_lines for s, _ in line})
    where = {v: i for i, v in enumerate(levels)}
    for line in factor_lines:
        xs = [where[factor_level(s, factor)] for s, _ in line]
        ax.plot(xs, [rho for _, rho in line], marker="o", label=_line_label(line, factor))
    ax.set_xticks(range(len(levels)), [f"{factor}{v}" for v in levels])
    ax.set_xlabel(f"{factor}: increasing subscript, the order rho_e ranks against 1..n")
    ax.set_ylabel(r"$\rho_{sp}$")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def plot_factor_lines(
    lines: Mapping[str, Sequence[Sequence[tuple[str, float]]]], out_dir: Path
) -> list[Path]:
    """Plot rho_sp along each factor line, one panel per factor c, r, s, e; rho_e in the legend.

    Args:
        lines: {factor: [[(setting, rho_sp), ...], ...]}, each line ordered by increasing
            subscript, as `metrics.line_values(metrics.factor_lines(...), rho)` returns.
        out_dir: folder for factor_lines.png (1000 x 700 px) and .svg.

    Returns:
        The written paths, PNG first.
    """
    fig = new_figure(FACTOR_LINES_SIZE_IN)
    axes = fig.subplots(2, 2)
    for ax, factor in zip(axes.flat, ("c", "r", "s", "e"), strict=True):
        ax.set_title(f"along {factor}", fontsize=10)
        factor_group = [line for line in lines.get(factor, []) if len(line) >= 2]
        if factor_group:
            _draw_factor(ax, factor, factor_group)
        else:
            note(ax, f"no line along {factor}")
    return save_figure(fig, Path(out_dir), "factor_lines")


def plot_accuracy_scatter(
    acc_orig: Values,
    acc_reduced: Values,
    setting: str,
    out_dir: Path,
) -> list[Path]:
    """Scatter each network's reduced-setting accuracy against its reference accuracy.

    The title gives plain and tolerant rho_sp (default band). Writes
    accuracy_scatter_<setting>.png (600 x 500 px) and .svg.

    Raises:
        ValueError: unpaired or non-finite accuracies (as `metrics.spearman`), or a setting
            name unsafe as a file name.
    """
    if not _SAFE_STEM.match(setting):
        raise ValueError(f"setting {setting!r} must match {_SAFE_STEM.pattern} to name a file")
    rho = spearman(acc_orig, acc_reduced)
    tol = tolerant_spearman(acc_orig, acc_reduced)
    fig = new_figure(SCATTER_SIZE_IN)
    ax = fig.add_subplot()
    ax.scatter(acc_orig, acc_reduced, s=20, c=ALL_COLOR, zorder=3)
    ax.set_xlabel("reference top-1 accuracy (%)")
    ax.set_ylabel(f"{setting} top-1 accuracy (%)")
    ax.set_title(rf"{setting}: $\rho_{{sp}}$={rho:.3f}, tolerant={tol:.3f}", fontsize=10)
    ax.grid(True, alpha=0.3)
    return save_figure(fig, Path(out_dir), f"accuracy_scatter_{setting}")
