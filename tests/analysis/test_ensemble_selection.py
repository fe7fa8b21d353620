"""The greedy selection (analysis.ensemble.selection) against a selection worked out by hand,
and its metrics against core.metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.ensemble import selection as S
from core.metrics import evaluation_metrics, expected_calibration_error

LABELS = np.array([0, 0, 1, 1, 2, 2])


def probs_with_true(true: list[float]) -> np.ndarray:
    """(6, 3) probabilities: `true[i]` on example i's label, the rest split evenly."""
    p = np.repeat(((1 - np.array(true)) / 2)[:, None], 3, axis=1)
    p[np.arange(6), LABELS] = true
    return p


# A is sure of the first four examples, B (a little less) of the last four; C and D of none.
A = probs_with_true([0.95, 0.95, 0.95, 0.95, 0.3, 0.3])
B = probs_with_true([0.3, 0.3, 0.9, 0.9, 0.9, 0.9])
C = probs_with_true([0.6] * 6)
D = probs_with_true([0.5] * 6)
TRIALS = np.stack([A, B, C, D])


def test_the_greedy_selection_worked_out_by_hand():
    # Validation NLL, worked out by hand (natural log; the true class's probability matters):
    # step 1, single trials: A = (4 (-ln .95) + 2 (-ln .3)) / 6 = 0.435520,
    #   B = (2 (-ln .3) + 4 (-ln .9)) / 6 = 0.471565, C = -ln .6 = 0.510826, D = 0.693147: A.
    # step 2, the mean with A: +A 0.435520; +B (.625 x2, .925 x2, .6 x2) -> 0.352930;
    #   +C (.775 x4, .45 x2) -> 0.436097; +D (.725 x4, .4 x2) -> 0.519819: B.
    # step 3, the mean with A + B (sums 1.25 x2, 1.85 x2, 1.2 x2): +A (2.2, 2.8, 1.5 over 3)
    #   -> 0.357432; +B (1.55, 2.75, 2.1) -> 0.368015; +C (1.85, 2.45, 1.8) -> 0.398926;
    #   +D (1.75, 2.35, 1.7) -> 0.450392: A again (with replacement), but worse than step 2,
    #   so the chosen ensemble is the first two picks {A, B}.
    sel = S.greedy_select(TRIALS, LABELS, "nll", max_size=3)
    assert sel.picks == (0, 1, 0)
    assert sel.scores == pytest.approx((0.435520, 0.352930, 0.357432), abs=1e-6)
    assert sel.size == 2 and sel.members == (0, 1) and sel.counts() == {0: 1, 1: 1}


def test_selection_by_accuracy_starts_from_the_most_accurate_trial():
    # argmax right: A on 4 examples (its 0.3 loses to 0.35), B on 4, C and D on all 6: C
    # first; C + C stays at 6/6, and nothing beats it: the smallest ensemble, C alone.
    sel = S.greedy_select(TRIALS, LABELS, "acc", max_size=4)
    assert sel.picks[0] == 2 and sel.scores[0] == 1.0 and sel.size == 1


def test_an_ensemble_of_identical_members_equals_its_member():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5), size=200)
    y = rng.integers(0, 5, 200)
    copies = np.stack([p] * 4)
    sel = S.greedy_select(copies, y, "nll", max_size=4)
    ens = S.average(copies, sel.picks)
    np.testing.assert_allclose(ens, p)
    for f in (S.nll, S.accuracy, S.ece):
        assert f(ens, y) == pytest.approx(f(p, y), abs=1e-12)
    assert S.disagreement(copies) == 0.0


def test_the_metrics_are_those_of_core_metrics():
    rng = np.random.default_rng(1)
    members = rng.dirichlet(np.ones(10) * 0.3, size=(3, 500))  # (M, N, K)
    y = rng.integers(0, 10, 500)
    ens = members.mean(axis=0)
    core = evaluation_metrics(torch.from_numpy(members), torch.from_numpy(y))
    assert S.accuracy(ens, y) == pytest.approx(core["acc"], abs=1e-12)
    assert S.nll(ens, y) == pytest.approx(core["loss"], abs=1e-12)
    assert S.ece(ens, y) == pytest.approx(core["ece"], abs=1e-12)
    assert S.ece(ens, y) == pytest.approx(
        expected_calibration_error(torch.from_numpy(ens), torch.from_numpy(y)), abs=1e-12
    )
    assert S.disagreement(members) == pytest.approx(core["disagreement"], abs=1e-12)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="metric"):
        S.greedy_select(TRIALS, LABELS, "brier")
    with pytest.raises(ValueError, match="max_size"):
        S.greedy_select(TRIALS, LABELS, max_size=0)
