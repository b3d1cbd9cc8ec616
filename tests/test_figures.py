"""Tests of econas_hpc.study.figures: files written, PNGs decode at the stated size, SVG is XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from econas_hpc.study.figures import (
    DPI,
    FACTOR_LINES_SIZE_IN,
    RHO_ACC_SIZE_IN,
    SCATTER_SIZE_IN,
    plot_accuracy_scatter,
    plot_factor_lines,
    plot_rho_vs_acceleration,
)
from econas_hpc.study.metrics import factor_lines, line_values


def _check(paths: list[Path], stem: str, size_in: tuple[float, float]) -> None:
    assert [p.name for p in paths] == [f"{stem}.png", f"{stem}.svg"]
    image = imread(paths[0])
    assert image.shape[:2] == (round(size_in[1] * DPI), round(size_in[0] * DPI))
    assert float(np.std(image[..., :3])) > 0  # something was drawn
    root = ET.parse(paths[1]).getroot()
    assert root.tag.endswith("svg")
    assert not list(paths[0].parent.glob(".*.tmp"))


ROWS = [
    ("c0r0s0e600", 1.0, 1.0),
    ("c4r4s0e60", 0.80, 2070.0),
    ("c2r2s0e60", 0.85, 150.0),
    ("c0r0s0e30", 0.50, 20.0),
    ("c6r4s4e30", 0.30, 30000.0),
    ("c4r4s2e30", 0.20, 8000.0),
    ("broken", float("nan"), 10.0),
]


def test_rho_vs_acceleration(tmp_path: Path) -> None:
    paths = plot_rho_vs_acceleration(ROWS, tmp_path / "fig", highlight_threshold=0.7)
    _check(paths, "rho_vs_acceleration", RHO_ACC_SIZE_IN)


def test_rho_vs_acceleration_empty_still_writes(tmp_path: Path) -> None:
    paths = plot_rho_vs_acceleration([("x", float("nan"), 1.0)], tmp_path)
    _check(paths, "rho_vs_acceleration", RHO_ACC_SIZE_IN)


def test_factor_lines_figure(tmp_path: Path) -> None:
    settings = ["c0r0s0e30", "c0r0s0e60", "c4r0s0e60", "c2r0s0e60", "c4r4s0e60", "c4r4s0e30"]
    rho = dict(zip(settings, [0.5, 0.7, 0.6, 0.65, 0.55, 0.4], strict=True))
    lines = line_values(factor_lines(settings), rho)
    _check(plot_factor_lines(lines, tmp_path), "factor_lines", FACTOR_LINES_SIZE_IN)


def test_accuracy_scatter(tmp_path: Path, rng: np.random.Generator) -> None:
    orig = rng.normal(94, 0.5, size=20)
    reduced = orig - 15 + rng.normal(0, 0.5, size=20)
    paths = plot_accuracy_scatter(orig, reduced, "c4r4s0e60", tmp_path)
    _check(paths, "accuracy_scatter_c4r4s0e60", SCATTER_SIZE_IN)
    with pytest.raises(ValueError, match="file"):
        plot_accuracy_scatter(orig, reduced, "../evil", tmp_path)
