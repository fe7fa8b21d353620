"""Pareto front: the non-dominated points over any number of objectives (numpy only).

Used by the search study (tune_jobs/search.py writes pareto_front.parquet) and by the report's
Pareto figures (analysis/figures/search.py), so both mean the same thing by "on the front".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from core.errors import refusal

DIRECTIONS = ("max", "min")


def pareto_mask(points: ArrayLike, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the rows of `points` (n points x k objectives) on the Pareto front.

    `directions[j]` is 'max' (larger is better) or 'min' for objective j; a 1-D `points` is
    one objective. A point is on the front when no other point is at least as good in every
    objective and strictly better in one: identical points are all on it, or all off it.
    A point with NaN in any objective is never on the front and dominates nothing.
    """
    pts = np.asarray(points, dtype=float)
    if pts.ndim == 1:
        pts = pts[:, None]
    if pts.ndim != 2:
        raise ValueError(f"points must be shaped (points, objectives), got shape {pts.shape}")
    directions = list(directions)
    if len(directions) != pts.shape[1]:
        raise ValueError(
            f"{len(directions)} direction(s) {directions} for {pts.shape[1]} objective(s): "
            "give one direction per column of points"
        )
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        raise ValueError(refusal("direction", bad[0], DIRECTIONS))
    sign = np.array([1.0 if d == "max" else -1.0 for d in directions])
    score = pts * sign  # every objective larger-is-better
    valid = ~np.isnan(score).any(axis=1)
    mask = np.zeros(len(score), dtype=bool)
    rows = np.flatnonzero(valid)
    # In decreasing lexicographic order, a point's dominators all come before it, and a
    # dominated point is dominated by a point of the front: so each point is checked against
    # the front found so far only (tens of points, not every other: a 10,000-trial search's
    # front in a moment rather than a minute).
    order = rows[np.lexsort(score[rows].T[::-1])[::-1]]
    front = np.empty((0, score.shape[1]))
    for i in order:
        p = score[i]
        if ((front >= p).all(axis=1) & (front > p).any(axis=1)).any():
            continue
        mask[i] = True
        front = np.vstack([front, p])
    return mask
