"""Pure metrics of the proxy-reliability study (spec section 8, supplement sections A, B, D).

This module owns the numbers a user reads to decide which reduced setting to trust: Spearman,
the tolerant Spearman of supplement B (and, for comparison, spec 8.2's tie-group variant), the
"entropy" rho_e of supplement D, the acceleration ratio (arithmetic and measured), order flips
(supplement Table A1), the Pareto front of (rho_sp, acceleration), and the grouping of
settings into lines along one factor.

It is pure (numpy + scipy): no I/O, no torch, no h5py, no plotting. Accuracies are top-1 in
percent (95.27, not 0.9527), because the tolerance band b is in percentage points.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple, TypeAlias

import numpy as np
from scipy.stats import rankdata

from econas_hpc.errors import InvalidSettingError
from econas_hpc.settings import CIFAR_BASE, Base, Setting

DEFAULT_BAND = 0.15  # percentage points: about the run-to-run noise of CIFAR-10 (supplement B)
ROUNDING_SLACK = 1e-9  # points: float rounding in accuracy differences, not a tolerance
FACTORS = ("c", "r", "s", "e")
# One value per network (or per setting), as a list or a 1-D numpy array.
Values: TypeAlias = "Sequence[float] | np.ndarray"
_CANONICAL = re.compile(r"c(\d+)r(\d+)s(\d+)e(\d+)")


def _paired(a: Values, b: Values) -> tuple[np.ndarray, np.ndarray]:
    """Validate two paired 1-D samples and return them as float arrays."""
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"expected 1-D sequences, got shapes {x.shape} and {y.shape}")
    if x.size != y.size:
        raise ValueError(f"length mismatch: {x.size} vs {y.size} values")
    if x.size < 2:
        raise ValueError(f"need at least 2 paired values, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("values must be finite (drop failed networks before ranking)")
    return x, y


def _check_band(band: float) -> float:
    if not np.isfinite(band) or band < 0:
        raise ValueError(f"band must be a finite number >= 0 (percentage points), got {band!r}")
    return float(band)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation, NaN when either side is constant (as scipy returns)."""
    dx = x - x.mean()
    dy = y - y.mean()
    denom = float(np.sqrt(np.dot(dx, dx) * np.dot(dy, dy)))
    if denom == 0.0:
        return float("nan")
    # Clip: rounding can push a perfect correlation a hair past +-1.
    return float(np.clip(np.dot(dx, dy) / denom, -1.0, 1.0))


def spearman(a: Values, b: Values) -> float:
    """Spearman rank correlation of two paired samples, ties handled as scipy does.

    Reading: average ranks for ties, then the Pearson correlation of the ranks (spec 8.1); without
    ties this equals 1 - 6 sum(d^2) / (n (n^2 - 1)).

    Raises:
        ValueError: different lengths, fewer than 2 values, or a non-finite value.

    Returns:
        rho in [-1, 1]; NaN when either sample is constant (no ranking to compare), as
        `scipy.stats.spearmanr` returns, but without its warning.
    """
    x, y = _paired(a, b)
    return _pearson(rankdata(x), rankdata(y))


def _rho_from_d(d: np.ndarray) -> float:
    n = d.size
    return float(1.0 - 6.0 * float(np.dot(d, d)) / (n * (n * n - 1)))


def _within(diff: np.ndarray, band: float) -> np.ndarray:
    """|diff| <= band, with `ROUNDING_SLACK` so that 90.15 - 90.00 counts as 0.15."""
    return np.abs(diff) <= band + ROUNDING_SLACK


def tolerant_spearman(orig: Values, reduced: Values, band: float = DEFAULT_BAND) -> float:
    """Tolerant Spearman (supplement B): a pair within b in BOTH settings has no rank difference.

    Definition. With average ranks, network i's rank difference decomposes over pairs:
    d_i = R_i - Q_i = 1/2 * sum_{j != i} [sgn(x_i - x_j) - sgn(y_i - y_j)] (x original, y
    reduced). The tolerant d_i drops the terms of every pair (i, j) with |x_i - x_j| <= b AND
    |y_i - y_j| <= b, "considered as having no ranking difference"; then
    rho = 1 - 6 sum(d_i^2) / (n (n^2 - 1)).

    Properties (tested): b = 0 is plain Spearman when there are no ties; a pair within b in
    both settings costs nothing; a pair farther apart than b in either setting costs what it
    costs in plain Spearman, whatever networks lie between them (no chain forgives it: orig
    90.0/90.1/90.2 and reduced 90.2/90.1/90.0 give 0.5 at b = 0.15, not 1.0); the value lies in
    [-1, 1] (sum d_i^2 is convex in the pair terms, so it peaks at a full reversal). With exact
    ties the d^2 formula differs slightly from `spearman`'s Pearson of average ranks.

    Raises:
        ValueError: as `spearman`, or a negative / non-finite band.
    """
    x, y = _paired(orig, reduced)
    b = _check_band(band)
    dx, dy = x[:, None] - x[None, :], y[:, None] - y[None, :]
    forgiven = _within(dx, b) & _within(dy, b)
    terms = np.where(forgiven, 0.0, np.sign(dx) - np.sign(dy))  # the diagonal is 0 anyway
    d = 0.5 * terms.sum(axis=1)
    return _rho_from_d(d)


def _group_ranks(values: np.ndarray, band: float) -> np.ndarray:
    """Average ranks after merging values within `band` into tie groups (single linkage)."""
    order = np.argsort(values, kind="stable")
    gaps = np.diff(values[order])
    # A new group starts where the gap to the previous sorted value is >= band (exact ties merge).
    new_group = (gaps >= band) & (gaps > 0)
    group_of_sorted = np.concatenate(([0], np.cumsum(new_group)))
    group = np.empty_like(group_of_sorted)
    group[order] = group_of_sorted
    return rankdata(group)  # equal group id -> equal (average) rank


def tolerant_spearman_groups(orig: Values, reduced: Values, band: float = DEFAULT_BAND) -> float:
    """Tolerant Spearman, the spec 8.2 "simpler alternative" (kept for comparison only).

    Not supplement B's metric: its groups chain and are formed in each setting alone, so a
    reversal larger than b can be forgiven (`tolerant_spearman` is the supplement's). Reading:
    in each setting separately, sort the accuracies and merge neighbours whose gap is
    below b into tie groups (single linkage, so a chain 0.1 + 0.1 apart is one group); every
    member gets the group's average rank; then `spearman`-style Pearson of the ranks. b = 0
    gives exactly `spearman` (ties included). NaN when every network falls in one group.
    """
    x, y = _paired(orig, reduced)
    b = _check_band(band)
    return _pearson(_group_ranks(x, b), _group_ranks(y, b))


def entropy(values: Values, base: Values | None = None) -> float:
    """The "entropy" rho_e of supplement D: how monotone a sequence of rho_sp values is.

    Definition (supplement D): the Spearman coefficient between the objective set `values`
    (the rho_sp of the settings along one factor, listed by increasing subscript as
    `factor_lines` orders them) and an increasing base set (default 1..n; any strictly
    increasing base gives the same result). +1 = rho_sp rises with the subscript, -1 = it falls
    (e.g. ranking worsens as channels shrink from c0 to c4), near 0 = no trend; NaN for a
    constant sequence.

    Raises:
        ValueError: fewer than 2 values, a non-finite value, or a base that is not strictly
            increasing or has another length.
    """
    n = len(values)
    ref = np.arange(1.0, n + 1.0) if base is None else np.asarray(base, dtype=float)
    if ref.ndim == 1 and ref.size >= 2 and not np.all(np.diff(ref) > 0):
        raise ValueError(f"base must be strictly increasing, got {ref.tolist()}")
    return spearman(values, ref)


def acceleration_ratio(
    macs_orig: float,
    macs_reduced: float,
    samples_orig: float,
    samples_reduced: float,
    epochs_orig: float,
    epochs_reduced: float,
) -> float:
    """Arithmetic acceleration ratio of a reduced setting over the original (spec 8.4).

    Reading: training cost = MACs per image x training images per epoch x epochs, and the
    ratio is cost(original) / cost(reduced). Backward passes scale the same way on both sides,
    so they cancel. E.g. c4r4s0e60 vs c0r0s0e600 for DARTS_V2: 528e6 / 2.55e6 x 1 x 10 ~ 2070.

    Raises:
        ValueError: any argument that is not a finite number > 0.
    """
    args = {
        "macs_orig": macs_orig,
        "macs_reduced": macs_reduced,
        "samples_orig": samples_orig,
        "samples_reduced": samples_reduced,
        "epochs_orig": epochs_orig,
        "epochs_reduced": epochs_reduced,
    }
    for name, value in args.items():
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    cost_orig = float(macs_orig) * float(samples_orig) * float(epochs_orig)
    return cost_orig / (float(macs_reduced) * float(samples_reduced) * float(epochs_reduced))


def measured_acceleration(gpu_s_orig: float, gpu_s_reduced: float) -> float:
    """Measured acceleration: GPU-seconds of the original setting / GPU-seconds of the reduced.

    Both should come from the same GPU type (report it next to the ratio).

    Raises:
        ValueError: a value that is not a finite number > 0.
    """
    for name, value in (("gpu_s_orig", gpu_s_orig), ("gpu_s_reduced", gpu_s_reduced)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(gpu_s_orig) / float(gpu_s_reduced)


class OrderFlip(NamedTuple):
    """A pair whose order differs between settings a and b (supplement Table A1)."""

    better_in_a: str
    better_in_b: str
    margin_a: float  # accuracy lead of better_in_a in setting a (percentage points, > 0)
    margin_b: float  # accuracy lead of better_in_b in setting b (percentage points, > 0)

    @property
    def size(self) -> float:
        """Sum of both leads: how badly setting b misjudges the pair."""
        return self.margin_a + self.margin_b


def order_flips(
    names: Sequence[str],
    acc_a: Values,
    acc_b: Values,
    band: float = 0.0,
) -> list[OrderFlip]:
    """Pairs of networks whose order flips between setting a and setting b.

    Reading: i and j flip when acc_a[i] > acc_a[j] and acc_b[j] > acc_b[i] (exact ties are never
    flips). As in `tolerant_spearman`, a flip is dropped only when the pair is within `band` in
    both settings (|margin| <= band in a and in b). Sorted by `OrderFlip.size`, largest first,
    then by names. Table A1: A (95.27 vs 94.58 at c0r0s0e600) and B (82.42 vs 86.21 at
    c0r0s0e30) give OrderFlip("A", "B", 0.69, 3.79).

    Raises:
        ValueError: names of another length, duplicate names, or as `spearman`.
    """
    x, y = _paired(acc_a, acc_b)
    if len(names) != x.size or len(set(names)) != len(names):
        raise ValueError(f"need {x.size} distinct names, got {list(names)}")
    b = _check_band(band)
    flips: list[OrderFlip] = []
    for i in range(x.size):
        for j in range(x.size):
            ma, mb = x[i] - x[j], y[j] - y[i]
            if ma > 0 and mb > 0 and not (_within(np.array(ma), b) and _within(np.array(mb), b)):
                flips.append(OrderFlip(names[i], names[j], float(ma), float(mb)))
    flips.sort(key=lambda f: (-f.size, f.better_in_a, f.better_in_b))
    return flips


def factor_level(setting: str, factor: str) -> int:
    """The value of one factor ("c", "r", "s" or "e") in a setting string such as "c4r4s0e60".

    Only the notation is checked (not whether the setting can be built for a dataset).

    Raises:
        InvalidSettingError: a string not of the form cXrYsZeW, or an unknown factor.
    """
    match = _CANONICAL.fullmatch(setting.strip())
    if match is None or factor not in FACTORS:
        raise InvalidSettingError(
            f"cannot read factor {factor!r} of setting {setting!r}; expected a factor in "
            f"{FACTORS} and a setting like c4r4s0e60"
        )
    return int(match.group(FACTORS.index(factor) + 1))


def _sorted_line(group: list[Setting], factor: str) -> tuple[str, ...]:
    """The line's settings by increasing subscript of `factor` (c0, c1, ...; e30, e60, ...)."""
    ordered = sorted(group, key=lambda s: int(getattr(s, factor)))
    return tuple(str(s) for s in ordered)


def factor_lines(
    settings: Iterable[str], base: Base = CIFAR_BASE
) -> dict[str, list[tuple[str, ...]]]:
    """Group settings into lines along each factor, the other three factors fixed.

    Returns {factor: [line, ...]} for the factors "c", "r", "s", "e" (each key present, maybe
    with no lines). A line is a tuple of canonical setting strings ordered by increasing
    subscript of its factor, as supplement D lists them ({c0.., c1.., c2.., c3.., c4..};
    e30, e60, ...): for c, r, s that is decreasing budget, for e increasing. It holds >= 2
    settings. Lines keep the order in which
    their first setting appears in the input; duplicate settings count once.

    Raises:
        InvalidSettingError: a string that is not a valid cXrYsZeW setting for `base`.
    """
    parsed: dict[str, Setting] = {}
    for text in settings:
        setting = Setting.parse(text, base)
        parsed.setdefault(str(setting), setting)
    lines: dict[str, list[tuple[str, ...]]] = {}
    for factor in FACTORS:
        groups: dict[tuple[int, ...], list[Setting]] = {}
        for setting in parsed.values():
            fixed = tuple(getattr(setting, f) for f in FACTORS if f != factor)
            groups.setdefault(fixed, []).append(setting)
        lines[factor] = [_sorted_line(g, factor) for g in groups.values() if len(g) >= 2]
    return lines


def line_values(
    lines: Mapping[str, Sequence[Sequence[str]]], rho: Mapping[str, float]
) -> dict[str, list[list[tuple[str, float]]]]:
    """Attach rho_sp to each setting of `factor_lines` output, dropping settings without a value.

    Lines left with fewer than 2 settings are dropped, so each line can go to `entropy`.
    """
    out: dict[str, list[list[tuple[str, float]]]] = {}
    for factor, factor_group in lines.items():
        kept = [[(s, float(rho[s])) for s in line if s in rho] for line in factor_group]
        out[factor] = [line for line in kept if len(line) >= 2]
    return out
