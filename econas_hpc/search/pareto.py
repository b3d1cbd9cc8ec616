"""The Pareto front of points that maximise two coordinates, in pure numpy.

This module owns `pareto_front`, which both the run report (`search.history`: score against
parameters) and the zoo study (`study.metrics`: rank consistency against acceleration) draw.
It sits in `search`, below `study`, and needs neither scipy nor torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["pareto_front"]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates, maximising both coordinates.

    Points are (rho_sp, acceleration). j dominates i when j is >= i in both and > in one;
    equal points do not dominate each other, so both stay. Points with a NaN are never on the
    front (and dominate nothing). Returns indices in ascending order.
    """
    arr = np.asarray(points, dtype=float).reshape(-1, 2)
    valid = np.all(np.isfinite(arr), axis=1)
    front: list[int] = []
    for i in np.flatnonzero(valid):
        others = arr[valid]
        ge = np.all(others >= arr[i], axis=1)
        gt = np.any(others > arr[i], axis=1)
        if not np.any(ge & gt):
            front.append(int(i))
    return front
