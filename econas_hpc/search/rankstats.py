"""How consistently the cheap proxy ranks networks: Spearman correlations in pure numpy.

This module owns `proxy_rank_spearman` (segment k vs k + 1 over a run's networks, stored with
every finished cycle) and the rank statistics it needs (`average_ranks`, `spearman`), without
scipy, which the pure search layer may not import.
"""

from __future__ import annotations

import math

import numpy as np

from econas_hpc.records import NAN, RunState

MIN_RANK_NETWORKS = 3  # networks with both scores needed for a proxy-rank Spearman


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-D array, ties sharing their average rank (scipy's `rankdata`)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    group = np.cumsum(starts)  # 1-based tie group of each sorted position
    bounds = np.concatenate((np.flatnonzero(starts), [values.size]))
    ranks = np.empty(values.size, dtype=float)
    ranks[order] = 0.5 * (bounds[group - 1] + bounds[group] + 1)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation of two paired 1-D samples (average ranks for ties, then the
    Pearson correlation of the ranks, as scipy does); NaN when either side is constant.

    The pure-numpy twin of `study.metrics.spearman` (which needs scipy, barred here).
    """
    rx = average_ranks(np.asarray(x, dtype=float))
    ry = average_ranks(np.asarray(y, dtype=float))
    dx, dy = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float(np.dot(dx, dx)) * float(np.dot(dy, dy)))
    if denom == 0.0:
        return NAN
    return float(np.clip(np.dot(dx, dy) / denom, -1.0, 1.0))


def proxy_rank_spearman(state: RunState) -> tuple[float, float]:
    """How consistently the cheap proxy ranks networks: (segment 1 vs 2, segment 2 vs 3).

    Each value is the Spearman correlation between the scores after segment k and k + 1 (P20
    vs P40 and P40 vs P60 with 3 segments) over every network of the run, all cycles so far,
    with status "ok" and both scores; NaN when fewer than `MIN_RANK_NETWORKS` networks have
    both (or the run has fewer segments). Networks continued from a pool are its best, so the
    sample is range-restricted and the value reads low next to a full zoo's.
    """
    values: list[float] = []
    for first in (0, 1):
        pairs = [
            (n.scores[first], n.scores[first + 1])
            for n in state.networks.values()
            if n.status == "ok" and n.segments_done >= first + 2
        ]
        if len(pairs) < MIN_RANK_NETWORKS:
            values.append(NAN)
            continue
        data = np.asarray(pairs, dtype=float)
        values.append(spearman(data[:, 0], data[:, 1]))
    return values[0], values[1]
