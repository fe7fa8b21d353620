"""Out-of-distribution detection: confidence scores of an ensemble, AUROC and FPR at 95% TPR.

Convention: in-distribution (ID) images are the positives, and every score is a *confidence*,
larger meaning "more in-distribution":

* ``msp``      the maximum softmax probability of the ensemble prediction (the mean of the
  member probabilities);
* ``entropy``  minus the predictive entropy H(mean_m p_m) (natural log);
* ``mi``       minus the mutual information between the prediction and the member,
  H(mean_m p_m) - mean_m H(p_m), which is >= 0 and 0 for one member (then NaN is reported).

AUROC is the probability that a random ID image scores above a random OOD image, ties
counting one half (the Mann-Whitney rank statistic with average ranks). FPR95 is the share of
OOD images accepted at the largest threshold that accepts at least 95% of the ID images:
t = the ceil(0.95 n_id)-th largest ID score, FPR95 = mean(ood >= t) (a score equal to the
threshold is accepted, so ties count against the detector).
"""

from __future__ import annotations

import math

import torch

from core.columns import OOD_SCORES, ood_metric

__all__ = ["TPR", "auroc", "confidence_scores", "fpr_at_tpr", "ood_metrics"]

TPR = 0.95


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) along the last axis; 0 log 0 = 0."""
    return -torch.special.xlogy(p, p).sum(-1)


def confidence_scores(probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per example confidence (larger = more in-distribution) from member probabilities
    (M, N, K): {'msp', 'entropy', 'mi'} as float64 (N,); 'mi' is NaN for one member."""
    p = torch.as_tensor(probs).to(torch.float64)
    if p.dim() != 3:
        raise ValueError(f"probs must be shaped (members, examples, classes), got {tuple(p.shape)}")
    mean = p.mean(0)
    h_mean = _entropy(mean)
    mi = h_mean - _entropy(p).mean(0)
    if p.shape[0] == 1:
        mi = torch.full_like(h_mean, math.nan)
    return {"msp": mean.amax(-1), "entropy": -h_mean, "mi": -mi}


def auroc(id_scores: torch.Tensor, ood_scores: torch.Tensor) -> float:
    """P(id > ood) + P(id == ood) / 2 over all (ID, OOD) pairs, from average ranks."""
    a = torch.as_tensor(id_scores, dtype=torch.float64).flatten()
    b = torch.as_tensor(ood_scores, dtype=torch.float64).flatten()
    n, m = a.numel(), b.numel()
    if n == 0 or m == 0 or torch.isnan(a).any() or torch.isnan(b).any():
        return math.nan
    both = torch.cat([a, b])
    _, inverse, counts = torch.unique(both, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)  # 1-based rank of each value's last copy
    avg_rank = ends - (counts.to(torch.float64) - 1) / 2
    rank_sum = avg_rank[inverse[:n]].sum()
    return float((rank_sum - n * (n + 1) / 2) / (n * m))


def fpr_at_tpr(id_scores: torch.Tensor, ood_scores: torch.Tensor, tpr: float = TPR) -> float:
    """Share of OOD scores >= t, t the ceil(tpr n_id)-th largest ID score."""
    a = torch.as_tensor(id_scores, dtype=torch.float64).flatten()
    b = torch.as_tensor(ood_scores, dtype=torch.float64).flatten()
    if a.numel() == 0 or b.numel() == 0 or torch.isnan(a).any() or torch.isnan(b).any():
        return math.nan
    k = max(1, math.ceil(tpr * a.numel() - 1e-9))  # 1e-9: 0.95 * 20 is 19.000000000000004
    t = torch.sort(a, descending=True).values[k - 1]
    return float((b >= t).to(torch.float64).mean())


def ood_metrics(id_probs: torch.Tensor, ood_probs: torch.Tensor) -> dict[str, float]:
    """{ood_auroc_<score>, ood_fpr95_<score>} of member probabilities (M, N, K) of ID and OOD
    images (core.columns names them)."""
    sid, sood = confidence_scores(id_probs), confidence_scores(ood_probs)
    out: dict[str, float] = {}
    for s in OOD_SCORES:
        out[ood_metric("auroc", s)] = auroc(sid[s], sood[s])
        out[ood_metric("fpr95", s)] = fpr_at_tpr(sid[s], sood[s])
    return out
