"""Greedy ensemble selection with replacement (Caruana et al. 2004), the selection of
uncertainty-baselines' hyper-deep ensembles (baselines/cifar/hyperdeepensemble.py), and the
metrics of averaged class probabilities. Pure NumPy: no torch, no pandas.

Every candidate is one trial's predicted probabilities (N, K) on the same examples. An ensemble
is a multiset of candidates; its prediction is the mean of its members' probabilities (a
candidate picked twice counts twice).
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

# As core.metrics: probabilities clamped to at least EPS before the log; ECE_BINS equal-width
# confidence bins (tests/analysis/test_ensemble.py checks both agree with core.metrics).
EPS = 1e-12
ECE_BINS = 15
CHUNK = 64  # candidates scored at once by accuracy (a (CHUNK, N, K) array)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood (natural log) of the labels under probs (N, K)."""
    p = probs[np.arange(len(labels)), labels].astype(np.float64)
    return float(-np.log(np.maximum(p, EPS)).mean())


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == labels).mean())


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error as core.metrics.expected_calibration_error: bins of equal
    width on the max-probability, bin b covering ((b-1)/n_bins, b/n_bins] (0 in the first),
    sum over bins of |correct - confidence| summed in the bin, over N."""
    probs = probs.astype(np.float64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / len(conf))


def disagreement(members: np.ndarray) -> float:
    """Mean over distinct pairs of members (M, N, K) of the fraction of examples on which
    their argmax differs; 0 for one member (as core.metrics' member disagreement)."""
    pred = members.argmax(axis=2)
    m = len(pred)
    if m < 2:
        return 0.0
    pairs = [(pred[a] != pred[b]).mean() for a in range(m) for b in range(a + 1, m)]
    return float(np.mean(pairs))


# metric name -> (function of (probs, labels), larger is better)
METRICS = {"nll": (nll, False), "acc": (accuracy, True)}


@dataclasses.dataclass(frozen=True)
class Selection:
    """A greedy run: `picks` the candidate added at each step (step 1: the best single
    candidate), `scores` the validation metric of the ensemble after each step, `size` the
    chosen number of steps (the best score; the fewest steps on ties)."""

    metric: str
    picks: tuple[int, ...]
    scores: tuple[float, ...]
    size: int

    @property
    def members(self) -> tuple[int, ...]:
        """The chosen ensemble: the first `size` picks, with repeats."""
        return self.picks[: self.size]

    def counts(self) -> Counter[int]:
        """How many times each candidate is in the chosen ensemble."""
        return Counter(self.members)


def average(probs: np.ndarray, members: tuple[int, ...] | list[int]) -> np.ndarray:
    """The ensemble prediction of `members` (indices into probs (T, N, K), with repeats)."""
    return probs[list(members)].astype(np.float64).mean(axis=0)


def _candidate_scores(
    total: np.ndarray, probs: np.ndarray, labels: np.ndarray, k: int, metric: str
) -> np.ndarray:
    """The metric of (total + probs[c]) / (k + 1) for every candidate c: the ensemble of k
    members summing to `total` with c added."""
    if metric == "nll":
        idx = np.arange(len(labels))
        true = (total[idx, labels][None, :] + probs[:, idx, labels]) / (k + 1)
        return -np.log(np.maximum(true, EPS)).mean(axis=1)
    out = np.empty(len(probs))
    for lo in range(0, len(probs), CHUNK):
        mixed = total[None] + probs[lo : lo + CHUNK]  # argmax is unchanged by the 1/(k+1)
        out[lo : lo + CHUNK] = (mixed.argmax(axis=2) == labels[None]).mean(axis=1)
    return out


def greedy_select(
    probs: np.ndarray, labels: np.ndarray, metric: str = "nll", max_size: int = 20
) -> Selection:
    """Forward selection with replacement on `labels` (the validation split): start from the
    best single candidate by `metric`, then add, `max_size - 1` times, the candidate (any,
    again one already in) whose addition gives the best metric of the averaged probabilities,
    the first candidate on ties. probs: (T, N, K) candidates' probabilities."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r}: allowed {sorted(METRICS)}")
    if probs.ndim != 3 or len(probs) == 0 or probs.shape[1] != len(labels):
        raise ValueError(f"probs {probs.shape} must be (T >= 1, N, K) with N = {len(labels)}")
    if max_size < 1:
        raise ValueError(f"max_size {max_size}: at least 1")
    larger = METRICS[metric][1]
    probs = probs.astype(np.float64)
    total = np.zeros(probs.shape[1:])
    picks: list[int] = []
    scores: list[float] = []
    for k in range(max_size):
        cand = _candidate_scores(total, probs, labels, k, metric)
        best = int(np.argmax(cand) if larger else np.argmin(cand))  # first of equals
        picks.append(best)
        scores.append(float(cand[best]))
        total += probs[best]
    order = np.array(scores) * (-1 if larger else 1)
    size = int(np.argmin(order)) + 1  # the fewest steps among the best scores
    return Selection(metric, tuple(picks), tuple(scores), size)
