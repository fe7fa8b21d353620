"""core.pareto.pareto_mask: the one non-dominated mask of the search study and the report."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from core.pareto import pareto_mask

NAN = float("nan")


def brute_force(points: np.ndarray, directions: list[str]) -> list[bool]:
    """Straight from the definition, point by point."""
    better = [(lambda a, b: a > b) if d == "max" else (lambda a, b: a < b) for d in directions]
    out = []
    for i, p in enumerate(points):
        if np.isnan(p).any():
            out.append(False)
            continue
        dominated = False
        for j, q in enumerate(points):
            if j == i or np.isnan(q).any():
                continue
            no_worse = all(qk == pk or f(qk, pk) for qk, pk, f in zip(q, p, better, strict=True))
            strictly = any(f(qk, pk) for qk, pk, f in zip(q, p, better, strict=True))
            dominated |= no_worse and strictly
        out.append(not dominated)
    return out


def test_one_objective_keeps_every_copy_of_the_best():
    assert pareto_mask([3.0, 5.0, 1.0, 5.0], ["max"]).tolist() == [False, True, False, True]
    assert pareto_mask([3.0, 5.0, 1.0, 5.0], ["min"]).tolist() == [False, False, True, False]
    # a column vector is the same as a 1-D array
    assert pareto_mask([[3.0], [5.0], [1.0]], ["max"]).tolist() == [False, True, False]


def test_two_objectives_values_and_directions():
    pts = np.array([[1, 3], [2, 2], [3, 1], [2, 1], [2, 2], [0, 0]], dtype=float)
    # both max: (2, 1) is dominated by (2, 2); the tied (2, 2) both stay; (0, 0) by everything
    assert pareto_mask(pts, ["max", "max"]).tolist() == [1, 1, 1, 0, 1, 0]
    # first min, second max: (1, 3) beats all but (0, 0), which is best in x
    assert pareto_mask(pts, ["min", "max"]).tolist() == [1, 0, 0, 0, 0, 1]
    # both min: (0, 0) dominates every other point
    assert pareto_mask(pts, ["min", "min"]).tolist() == [0, 0, 0, 0, 0, 1]
    # first max, second min
    assert pareto_mask(pts, ["max", "min"]).tolist() == [0, 0, 1, 0, 0, 1]


def test_ties_in_one_objective_are_decided_by_the_other():
    pts = [[1.0, 5.0], [1.0, 4.0], [1.0, 5.0]]
    assert pareto_mask(pts, ["max", "max"]).tolist() == [True, False, True]
    assert pareto_mask(pts, ["max", "min"]).tolist() == [False, True, False]


def test_three_objectives():
    pts = np.array(
        [
            [0.9, 4e6, 30.0],  # best accuracy
            [0.8, 1e6, 30.0],  # fewest params
            [0.7, 2e6, 90.0],  # fastest
            [0.7, 2e6, 80.0],  # dominated by the row above
            [0.8, 2e6, 30.0],  # dominated by row 1 (same acc and speed, more params)
            [0.6, 5e6, 10.0],  # dominated by everything
        ]
    )
    assert pareto_mask(pts, ["max", "min", "max"]).tolist() == [1, 1, 1, 0, 0, 0]
    # with speed minimised, the slowest row is non-dominated in that objective
    assert pareto_mask(pts, ["max", "min", "min"]).tolist() == [1, 1, 0, 0, 0, 1]


def test_nan_is_never_on_the_front_and_dominates_nothing():
    pts = np.array([[NAN, 100.0], [1.0, 1.0], [2.0, NAN], [0.5, 0.5]])
    assert pareto_mask(pts, ["max", "max"]).tolist() == [False, True, False, False]
    assert pareto_mask([NAN, NAN], ["max"]).tolist() == [False, False]
    # a NaN that would be best in every objective leaves the others' front unchanged
    assert pareto_mask([[NAN, NAN], [1.0, 2.0], [2.0, 1.0]], ["max", "max"]).tolist() == [
        False,
        True,
        True,
    ]


def test_dataframes_and_empty_input():
    df = pd.DataFrame({"acc": [0.9, 0.8, 0.7], "params": [3, 1, 2]})
    assert pareto_mask(df, ["max", "min"]).tolist() == [True, True, False]
    assert pareto_mask(np.empty((0, 2)), ["max", "min"]).tolist() == []


@pytest.mark.parametrize("k", [1, 2, 3])
def test_matches_the_definition_on_random_points_with_ties(k):
    rng = np.random.default_rng(k)
    for directions in itertools.product(["max", "min"], repeat=k):
        for _ in range(10):
            pts = rng.integers(0, 5, size=(14, k)).astype(float)  # many ties
            pts[rng.random((14, k)) < 0.1] = NAN
            got = pareto_mask(pts, list(directions)).tolist()
            assert got == brute_force(pts, list(directions)), (pts, directions)


def test_refuses_malformed_input():
    with pytest.raises(ValueError, match="1 direction"):
        pareto_mask([[1.0, 2.0]], ["max"])
    with pytest.raises(ValueError, match="'up'"):
        pareto_mask([[1.0, 2.0]], ["max", "up"])
    with pytest.raises(ValueError, match="shaped"):
        pareto_mask(np.zeros((2, 2, 2)), ["max", "max"])
