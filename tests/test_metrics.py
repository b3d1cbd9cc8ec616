"""Tests of econas_hpc.study.metrics: against scipy, hand cases, and the tolerant readings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from econas_hpc.errors import InvalidSettingError
from econas_hpc.search.pareto import pareto_front
from econas_hpc.study.metrics import (
    OrderFlip,
    acceleration_ratio,
    entropy,
    factor_lines,
    line_values,
    measured_acceleration,
    order_flips,
    spearman,
    tolerant_spearman,
    tolerant_spearman_groups,
)


# --- spearman ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_spearman_matches_scipy_without_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=30), rng.normal(size=30)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_spearman_matches_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 5, size=25), rng.integers(0, 4, size=25)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_spearman_hand_cases() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # Textbook: d = (0, -1, 1, -1, 1) -> sum d^2 = 4 -> 1 - 24/120 = 0.8
    assert spearman([1, 2, 3, 4, 5], [1, 3, 2, 5, 4]) == pytest.approx(0.8)


def test_spearman_constant_input_is_nan() -> None:
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


@pytest.mark.parametrize(
    ("a", "b"),
    [([1, 2, 3], [1, 2]), ([1], [1]), ([], []), ([1.0, float("nan")], [1.0, 2.0])],
)
def test_spearman_rejects_bad_input(a: list[float], b: list[float]) -> None:
    with pytest.raises(ValueError):
        spearman(a, b)


# --- tolerant spearman ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_tolerant_band_zero_equals_spearman(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(90, 2, size=40), rng.normal(70, 5, size=40)
    assert tolerant_spearman(a, b, band=0.0) == pytest.approx(spearman(a, b), abs=1e-12)
    assert tolerant_spearman_groups(a, b, band=0.0) == pytest.approx(spearman(a, b), abs=1e-12)


def test_groups_band_zero_equals_spearman_with_ties() -> None:
    a, b = [1, 1, 2, 3, 3, 4], [2, 1, 1, 3, 5, 5]
    assert tolerant_spearman_groups(a, b, band=0.0) == pytest.approx(spearmanr(a, b).statistic)


def test_swap_within_band_in_both_settings_costs_nothing() -> None:
    orig = [90.0, 91.0, 92.00, 92.10, 94.0]
    red = [70.0, 71.0, 72.05, 72.00, 74.0]  # 3rd and 4th swap, 0.05 apart (both < 0.15)
    assert spearman(orig, red) < 1.0
    assert tolerant_spearman(orig, red) == pytest.approx(1.0)
    assert tolerant_spearman_groups(orig, red) == pytest.approx(1.0)


def test_swap_within_band_in_one_setting_still_costs() -> None:
    orig = [90.0, 91.0, 92.00, 92.10, 94.0]  # 0.10 apart: within the band
    red = [70.0, 71.0, 73.00, 72.00, 74.0]  # 1.00 apart: a real swap
    assert tolerant_spearman(orig, red) == pytest.approx(spearman(orig, red))
    # And the mirror case: close in the reduced setting only.
    orig2 = [90.0, 91.0, 92.0, 93.0, 94.0]
    red2 = [70.0, 71.0, 72.10, 72.00, 74.0]
    assert tolerant_spearman(orig2, red2) == pytest.approx(spearman(orig2, red2))


def test_tolerant_is_never_below_plain_and_grows_with_band() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(93, 0.3, size=50), rng.normal(80, 0.3, size=50)
    values = [tolerant_spearman(a, b, band=band) for band in (0.0, 0.05, 0.15, 0.5, 5.0)]
    assert values[0] == pytest.approx(spearman(a, b))
    assert all(x <= y + 1e-12 for x, y in zip(values, values[1:], strict=False))
    assert values[-1] == pytest.approx(1.0)  # everything within the band in both settings


def test_tolerant_rejects_negative_band() -> None:
    with pytest.raises(ValueError, match="band"):
        tolerant_spearman([1, 2, 3], [1, 2, 3], band=-0.1)


def test_groups_single_linkage_chains() -> None:
    # 92.0, 92.1, 92.2 chain into one group at b = 0.15 (each gap 0.1) -> all tied.
    orig = [92.0, 92.1, 92.2, 95.0]
    red = [72.2, 72.1, 72.0, 75.0]
    assert tolerant_spearman_groups(orig, red) == pytest.approx(1.0)


# --- entropy ----------------------------------------------------------------------------------
def test_entropy_monotone_sequences() -> None:
    assert entropy([0.1, 0.3, 0.5, 0.6, 0.9]) == pytest.approx(1.0)
    assert entropy([0.9, 0.6, 0.5, 0.3, 0.1]) == pytest.approx(-1.0)
    assert entropy([0.1, 0.3, 0.5], base=[2, 10, 11]) == pytest.approx(1.0)
    assert entropy([0.1, 0.5, 0.3, 0.6, 0.9]) == pytest.approx(0.9)


def test_entropy_bad_base_and_constant() -> None:
    with pytest.raises(ValueError, match="increasing"):
        entropy([0.1, 0.2, 0.3], base=[1, 3, 2])
    with pytest.raises(ValueError):
        entropy([0.1, 0.2, 0.3], base=[1, 2])
    assert math.isnan(entropy([0.5, 0.5, 0.5]))


# --- acceleration -----------------------------------------------------------------------------
def test_acceleration_ratio_darts_v2_proxy() -> None:
    ratio = acceleration_ratio(528e6, 2.55e6, 50_000, 50_000, 600, 60)
    assert ratio == pytest.approx(2070.6, rel=1e-3)
    # s2 halves the images: twice the acceleration.
    assert acceleration_ratio(528e6, 2.55e6, 50_000, 25_000, 600, 60) == pytest.approx(2 * ratio)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_acceleration_ratio_rejects_bad_values(bad: float) -> None:
    with pytest.raises(ValueError, match="macs_reduced"):
        acceleration_ratio(528e6, bad, 50_000, 50_000, 600, 60)


def test_measured_acceleration() -> None:
    assert measured_acceleration(3600.0, 36.0) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="gpu_s_reduced"):
        measured_acceleration(3600.0, 0.0)


# --- order flips ------------------------------------------------------------------------------
def test_order_flips_table_a1() -> None:
    flips = order_flips(["A", "B"], [95.27, 94.58], [82.42, 86.21])
    assert len(flips) == 1
    flip = flips[0]
    assert (flip.better_in_a, flip.better_in_b) == ("A", "B")
    assert flip.margin_a == pytest.approx(0.69)
    assert flip.margin_b == pytest.approx(3.79)
    assert flip.size == pytest.approx(4.48)
    assert isinstance(flip, tuple)


def test_order_flips_sorted_and_band() -> None:
    names = ["n1", "n2", "n3", "n4"]
    a = [90.0, 91.0, 92.0, 92.1]
    b = [75.0, 71.0, 72.0, 71.95]  # n1 jumps over all; n3/n4 swap within 0.15 in both
    flips = order_flips(names, a, b)
    assert [(f.better_in_a, f.better_in_b) for f in flips][:1] == [("n4", "n1")]
    assert ("n4", "n3") in {(f.better_in_a, f.better_in_b) for f in flips}
    tolerant = order_flips(names, a, b, band=0.15)
    assert ("n4", "n3") not in {(f.better_in_a, f.better_in_b) for f in tolerant}
    assert len(tolerant) == len(flips) - 1
    sizes = [f.size for f in flips]
    assert sizes == sorted(sizes, reverse=True)


def test_order_flips_no_flip_and_bad_names() -> None:
    assert order_flips(["a", "b", "c"], [1, 2, 3], [4, 5, 6]) == []
    with pytest.raises(ValueError, match="names"):
        order_flips(["a", "a"], [1, 2], [2, 1])
    assert OrderFlip("x", "y", 1.0, 2.0).size == 3.0


# --- pareto -----------------------------------------------------------------------------------
def test_pareto_front_hand_case() -> None:
    points = [
        (0.90, 10.0),  # 0: front (best rho)
        (0.80, 100.0),  # 1: front
        (0.70, 50.0),  # 2: dominated by 1
        (0.60, 1000.0),  # 3: front (fastest)
        (0.80, 100.0),  # 4: equal to 1: both stay
        (float("nan"), 5000.0),  # 5: never on the front
        (0.50, 20.0),  # 6: dominated
    ]
    assert pareto_front(points) == [0, 1, 3, 4]
    assert pareto_front([]) == []


# --- factor lines -----------------------------------------------------------------------------
def test_factor_lines_grouping() -> None:
    settings = ["c0r0s0e60", "c4r4s0e60", "c4r0s0e60", "c2r0s0e60", "c0r0s0e30", "c4r4s0e30"]
    settings += ["c4r4s0e60"]  # duplicates count once
    lines = factor_lines(settings)
    assert set(lines) == {"c", "r", "s", "e"}
    assert lines["c"] == [("c0r0s0e60", "c2r0s0e60", "c4r0s0e60")]  # increasing subscript
    assert lines["r"] == [("c4r0s0e60", "c4r4s0e60")]
    assert lines["s"] == []
    assert lines["e"] == [("c0r0s0e30", "c0r0s0e60"), ("c4r4s0e30", "c4r4s0e60")]


def test_factor_lines_rejects_bad_setting() -> None:
    with pytest.raises(InvalidSettingError):
        factor_lines(["c4r4s0e60", "bogus"])


def test_line_values_drops_missing_and_short_lines() -> None:
    lines: dict[str, list[tuple[str, ...]]] = {
        "c": [("c0r0s0e60", "c2r0s0e60", "c4r0s0e60")],
        "e": [("c0r0s0e30", "c0r0s0e60")],
    }
    rho = {"c4r0s0e60": 0.5, "c0r0s0e60": 0.9}
    out = line_values(lines, rho)
    assert out == {"c": [[("c0r0s0e60", 0.9), ("c4r0s0e60", 0.5)]], "e": []}
    assert entropy([v for _, v in out["c"][0]]) == pytest.approx(-1.0)
