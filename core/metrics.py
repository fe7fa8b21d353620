"""Ensemble training loss and evaluation metrics.

Every model in this project returns logits shaped (M, B, K): M ensemble members, each seeing
every one of the B examples, K classes. Evaluation works on member *probabilities*
(M, N, K); the ensemble prediction is the mean of the member probabilities.

The training loss has one convention per kind of ensemble (`ensemble_loss`):

* ``batch`` and ``single``: the mean cross-entropy over the M * B tiled rows, i.e. the mean
  over members of each member's mean cross-entropy. This is BatchEnsemble's convention, as in
  uncertainty-baselines (baselines/cifar/batchensemble.py tiles images and labels M times and
  takes ``reduce_mean`` over the tiled batch). The slow weights are shared by all members:
  a sum over members would give them M times the gradient of one network, so the mean keeps
  their step size that of a single network. (Each member's own parameters, its fast weights
  and per-member biases, get 1/M of its gradient; that is part of the convention.)
* ``deep``: the *sum* over members of each member's mean cross-entropy. Deep-ensemble members
  share no parameter, so member m's parameters get d loss / d theta_m equal to the gradient it
  would get trained alone on the same batch: M independent networks, whatever the optimizer
  (a mean would scale every member's gradient by 1/M, an lr/M for SGD and IVON). ``packed``
  (Packed-Ensembles) too: its members are independent narrow networks, grouped convolutions
  share no weight between them. ``mimo`` too, as its authors train it (uncertainty-baselines
  baselines/cifar/mimo.py: ``reduce_mean`` over the batch of ``reduce_sum`` over members):
  each head is a member's own output on its own inputs, each scored like a network alone.

The value reported as the training loss (`core.optim.train_step`) is the mean over members in
both cases, so that it compares across ensemble kinds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Probabilities are clamped to at least this before taking logs (NLL and KL).
EPS = 1e-12
ECE_BINS = 15
# How ensemble_loss combines the members' mean cross-entropies, per kind of ensemble.
# packed: torch-uncertainty averages over the M * B rows instead (Adam is scale-invariant).
# mimo: the authors' sum over members of their mean cross-entropy (uncertainty-baselines).
LOSS_CONVENTIONS = {
    "single": "mean",
    "batch": "mean",
    "deep": "sum",
    "packed": "sum",
    "mimo": "sum",
}


def ensemble_loss(logits: torch.Tensor, y: torch.Tensor, ensemble: str = "batch") -> torch.Tensor:
    """Training loss of one batch (the conventions are in this module's docstring).

    logits: (M, B, K); y: (B,) int64, every member trained on every example, or (M, B), member
    m's own labels y[m] (MIMO's members train on different rows: core.layers.mimo).
    ensemble ``batch`` / ``single``: mean over members of each member's mean cross-entropy;
    ``deep`` / ``packed``: their sum, so that each member gets the gradient of a network
    trained alone.
    """
    if ensemble not in LOSS_CONVENTIONS:
        raise ValueError(f"ensemble={ensemble!r}: allowed {list(LOSS_CONVENTIONS)}")
    if logits.dim() != 3:
        raise ValueError(
            f"logits must be shaped (members, batch, classes), got shape {tuple(logits.shape)}"
        )
    m, b, k = logits.shape
    if not ((y.dim() == 1 and y.shape[0] == b) or tuple(y.shape) == (m, b)):
        raise ValueError(
            f"labels must be shaped (batch,) = ({b},) or (members, batch) = ({m}, {b}) to match "
            f"logits {tuple(logits.shape)}, got shape {tuple(y.shape)}"
        )
    # All members have the same B, so the mean over M*B rows is the mean of member means.
    targets = y.reshape(m * b) if y.dim() == 2 else y.repeat(m)
    mean = F.cross_entropy(logits.reshape(m * b, k), targets)
    return mean * m if LOSS_CONVENTIONS[ensemble] == "sum" else mean


def reported_loss(loss: float, members: int, ensemble: str) -> float:
    """The mean over members of their mean cross-entropy, from `ensemble_loss`'s value."""
    return loss / members if LOSS_CONVENTIONS[ensemble] == "sum" else loss


def _check(probs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    probs = torch.as_tensor(probs)
    labels = torch.as_tensor(labels)
    if probs.dim() != 3:
        raise ValueError(
            f"probs must be shaped (members, examples, classes), got shape {tuple(probs.shape)}"
        )
    m, n, k = probs.shape
    if m < 1 or n < 1 or k < 1:
        raise ValueError(f"probs must be non-empty, got shape {tuple(probs.shape)}")
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(
            f"labels must be shaped ({n},) to match probs {tuple(probs.shape)}, "
            f"got shape {tuple(labels.shape)}"
        )
    labels = labels.to(device=probs.device, dtype=torch.int64)
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(
            f"labels must lie in [0, {k - 1}] for {k} classes, "
            f"got range [{int(labels.min())}, {int(labels.max())}]"
        )
    return probs.detach().to(torch.float64), labels


def expected_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, n_bins: int = ECE_BINS
) -> float:
    """ECE of a (N, K) predictive distribution: equal-width bins on the max-probability.

    Bin b covers confidences in ((b-1)/n_bins, b/n_bins]; a confidence of exactly 0 goes to the
    first bin. ECE = sum_b (n_b / N) * |accuracy_b - mean confidence_b|.
    """
    conf, pred = probs.max(dim=1)
    correct = (pred == labels).to(probs.dtype)
    bins = (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)
    n = conf.shape[0]
    count = torch.zeros(n_bins, dtype=probs.dtype, device=probs.device)
    conf_sum = torch.zeros_like(count)
    acc_sum = torch.zeros_like(count)
    count.index_add_(0, bins, torch.ones_like(conf))
    conf_sum.index_add_(0, bins, conf)
    acc_sum.index_add_(0, bins, correct)
    # |acc_b - conf_b| * n_b / N == |acc_sum_b - conf_sum_b| / N
    return float((acc_sum - conf_sum).abs().sum() / n)


def evaluation_metrics(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Metrics of an ensemble from its member probabilities.

    probs: (M, N, K) member softmax outputs; labels: (N,).
    Returns floats under exactly these keys:
      acc           accuracy of the ensemble prediction (mean of member probabilities)
      loss          NLL (natural log) of the ensemble prediction, probabilities clamped at 1e-12
      ece           expected calibration error, 15 equal-width confidence bins
      brier         sum over classes of squared error vs one-hot, averaged over examples
      member_acc    mean accuracy of the individual members
      disagreement  mean over member pairs of the fraction of examples whose argmax differs
                    (0 for one member)
      kl            mean over ordered pairs m != n of the mean over examples of
                    KL(p_m || p_n) (0 for one member)
    """
    probs, labels = _check(probs, labels)
    m, n, k = probs.shape
    ens = probs.mean(dim=0)
    idx = torch.arange(n, device=probs.device)

    acc = (ens.argmax(dim=1) == labels).double().mean()
    nll = -ens[idx, labels].clamp_min(EPS).log().mean()
    onehot = F.one_hot(labels, k).to(probs.dtype)
    brier = (ens - onehot).pow(2).sum(dim=1).mean()
    member_pred = probs.argmax(dim=2)  # (M, N)
    member_acc = (member_pred == labels).double().mean()

    disagreement = 0.0
    kl = 0.0
    if m > 1:
        pairs = 0
        dis_sum = 0.0
        for a in range(m):
            for b in range(a + 1, m):
                dis_sum += float((member_pred[a] != member_pred[b]).double().mean())
                pairs += 1
        disagreement = dis_sum / pairs
        logp = probs.clamp_min(EPS).log()  # (M, N, K)
        kl_sum = 0.0
        for a in range(m):
            # KL(p_a || p_b) for all b at once: sum_k p_a (log p_a - log p_b), mean over N.
            kl_ab = (probs[a] * (logp[a] - logp)).sum(dim=2).mean(dim=1)  # (M,)
            kl_sum += float(kl_ab.sum() - kl_ab[a])
        kl = kl_sum / (m * (m - 1))

    return {
        "acc": float(acc),
        "loss": float(nll),
        "ece": expected_calibration_error(ens, labels),
        "brier": float(brier),
        "member_acc": float(member_acc),
        "disagreement": float(disagreement),
        "kl": float(kl),
    }
