"""Optimizers, learning-rate schedules, one training step and prediction.

`build_optimizer` turns a TrialConfig into (optimizer, per-step scheduler):

* ``adam``: torch.optim.Adam; ``sgd``: torch.optim.SGD with cfg.momentum and cfg.nesterov;
  both with ``fused=True`` (one kernel per parameter, on CPU as on CUDA): torch's default on
  CPU is a Python loop of about ten small ops per parameter tensor, which for a
  BatchEnsemble's many small fast-weight tensors measured 0.8 ms of a 25 ms simple_cnn step,
  0.2 ms fused (benchmarks/README.md, "Optimizer step"); the fused step differs from the loop
  only in float rounding;
  ``ivon``: ivon.IVON from the ivon-opt package (ess = cfg.ivon_ess or the number of training
  examples, hess_init = cfg.ivon_hess_init, weight_decay = cfg.ivon_weight_decay,
  mc_samples = cfg.ivon_train_samples).

IVON's defaults are its authors' CIFAR recipe: team-approx-bayes/ivon-experiments,
image_classification/train_ivon.sh after commit aa4a3e1 "fix hyperparameters" (2024-06-11),
the script behind the ResNet-20 / CIFAR-10 results of Shen et al., "Variational Learning is
Effective for Large Deep Networks" (ICML 2024, Sec. 4.1.2):

  value                  recipe                      here
  lr                     lr=0.2                      tune_jobs/optimizers.py (IVON's lr 0.2)
  hess_init              hess_init=0.5 (was 0.1)     TrialConfig.ivon_hess_init = 0.5
  weight decay (prior)   wdecay=2e-4                 TrialConfig.ivon_weight_decay = 2e-4
  ess                    ess=50000 = CIFAR train     ivon_ess None: number of training examples
  beta1, beta2           momentum=0.9, 0.99999       ivon-opt's defaults (0.9, 0.99999)
  clip_radius            train.py default inf        ivon-opt's default (inf)
  train MC samples       train.py --mc_samples 1     TrialConfig.ivon_train_samples = 1
  test MC samples        test_ivon_mean.sh: mean;    TrialConfig.ivon_test_samples = 0 (mean;
                         test_ivon_bayes.sh: 64      set 64 for the Bayes prediction)
  lr scale               ivon-opt rescale_lr=True: the step is lr * (hess_init + weight_decay)
                         times the preconditioned momentum, so lr is on SGD's scale

The recipe trains 200 epochs at batch size 50 with 5 warm-up epochs then cosine decay; the
studies here keep their own epochs, batch size and schedule. With weight_decay 0 and hess_init
0.1 (this module's earlier defaults) IVON stayed at chance on small subsets.
* Two parameter groups: fast weights (BatchEnsemble ``alpha`` / ``gamma``: names ending in
  ``.alpha`` / ``.gamma`` or bare ``alpha`` / ``gamma``, and the per-member ``bias`` of
  BatchEnsemble layers, as uncertainty-baselines does: see `param_groups`) train at
  lr * cfg.fast_lr_mult with no weight decay; all other trainable parameters use cfg.lr and
  the optimizer's weight decay.
* Schedule ``constant`` or ``cosine`` (per step, from lr down to 0 over
  cfg.epochs * steps_per_epoch steps).

IVON is driven as its authors prescribe (README of team-approx-bayes/ivon): for each of the
cfg.ivon_train_samples weight samples, zero the gradients, run forward and backward inside
``optimizer.sampled_params(train=True)``; leaving the context restores the mean weights and
*reads p.grad of every parameter* into IVON's running gradient average. ``optimizer.step()``
is called after the last context. Consequences handled here:

* a trainable parameter that got no gradient (unused layer, weight sharing) would crash
  ivon-opt 0.1.x (``p.grad.flatten()`` on None), so it is given a zero gradient inside the
  context;
* gradient-norm clipping must happen inside the context, before it is left: clipping after
  it would not change what IVON has already read. (ivon-opt's own ``clip_radius`` clips the
  update element-wise; it is left at its default, infinity.)
* the training loss and accuracy `train_step` returns are those of the mean weights (one
  forward pass without gradients before the sampled ones, about a third more per step; the
  norms' running statistics are left as the sampled passes make them), so that IVON's
  train - validation gap compares like with like: validation and test predict at the mean
  weights (ivon_test_samples 0), and Adam's and SGD's training pass is at their one set of
  weights. Before this the training accuracy was the sampled weights', biasing IVON's gap
  down (issue 22).
* ivon-opt keeps its step counter (used for momentum debiasing) in an attribute that
  ``state_dict()`` does not save: use `optimizer_state_dict` / `load_optimizer_state_dict`
  from this module when checkpointing so that a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from core.config import OPTIMIZERS, SCHEDULES, TrialConfig
from core.errors import ConfigError, refusal
from core.layers import BEConv2d, BELinear, mimo_align, mimo_batch
from core.metrics import ensemble_loss, reported_loss

try:  # ivon-opt is a declared dependency; keep adam/sgd usable if it is broken or missing
    import ivon as _ivon
except ImportError:  # pragma: no cover - exercised only without ivon-opt
    _ivon = None

FAST_WEIGHT_NAMES = ("alpha", "gamma")
# Layers whose `bias` is per-member (M, out) and trains with the fast weights. Norm layers'
# per-member affine `bias` is not among them (uncertainty-baselines excludes batch_norm).
MEMBER_BIAS_LAYERS = (BELinear, BEConv2d)


def is_fast_weight(name: str) -> bool:
    """True for BatchEnsemble fast weights: ``alpha``/``gamma`` or names ending ``.alpha``..."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf in FAST_WEIGHT_NAMES


def member_biases(model: nn.Module) -> set[int]:
    """ids of the per-member biases of the BatchEnsemble layers (BELinear, BEConv2d)."""
    return {
        id(m.bias)
        for m in model.modules()
        if isinstance(m, MEMBER_BIAS_LAYERS) and m.bias is not None
    }


def is_ivon(optimizer: torch.optim.Optimizer | None) -> bool:
    return _ivon is not None and isinstance(optimizer, _ivon.IVON)


def param_groups(model: nn.Module, cfg: TrialConfig) -> list[dict]:
    """The two parameter groups (slow, fast); empty groups are left out.

    Fast: the BatchEnsemble fast weights (`is_fast_weight`) and the per-member biases of
    BatchEnsemble layers (`member_biases`), exactly the variables uncertainty-baselines scales
    by its fast_weight_lr_multiplier: every trainable variable whose name holds neither
    'batch_norm' nor 'kernel' (baselines/cifar/batchensemble.py, the "Separate learning rate
    implementation" block of train_step: ``if ('batch_norm' not in var.name and 'kernel' not
    in var.name)``), i.e. alpha, gamma and the ensemble layers' bias (edward2's
    Conv2DBatchEnsemble / DenseBatchEnsemble keep a per-member bias of shape (M, out)). Norm
    layers' affine parameters and all slow weights stay slow.
    Only parameters with requires_grad are included; a tied parameter appears once.
    Each group carries a ``name`` entry ('slow' or 'fast') for inspection.
    """
    slow: list[nn.Parameter] = []
    fast: list[nn.Parameter] = []
    biases = member_biases(model)
    for name, p in model.named_parameters():  # de-duplicates tied parameters
        if not p.requires_grad:
            continue
        (fast if is_fast_weight(name) or id(p) in biases else slow).append(p)
    decay = cfg.ivon_weight_decay if cfg.optimizer == "ivon" else cfg.weight_decay
    groups = []
    if slow:
        groups.append({"name": "slow", "params": slow, "lr": cfg.lr, "weight_decay": decay})
    if fast:
        groups.append(
            {
                "name": "fast",
                "params": fast,
                "lr": cfg.lr * cfg.fast_lr_mult,
                "weight_decay": 0.0,
            }
        )
    if not groups:
        raise ValueError("the model has no trainable parameters (none with requires_grad=True)")
    return groups


class CosineFactor:
    """lr multiplier 0.5 * (1 + cos(pi * step / total)), reaching 0 at step `total` and
    staying there. A class (not a lambda) so that schedulers pickle (Ray checkpoints)."""

    def __init__(self, total_steps: int):
        self.total_steps = max(1, int(total_steps))

    def __call__(self, step: int) -> float:
        t = min(step, self.total_steps) / self.total_steps
        return 0.5 * (1.0 + math.cos(math.pi * t))


class ConstantFactor:
    def __call__(self, step: int) -> float:
        return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrialConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "constant":
        factor = ConstantFactor()
    elif cfg.schedule == "cosine":
        factor = CosineFactor(cfg.epochs * steps_per_epoch)
    else:
        raise ConfigError(refusal("schedule", cfg.schedule, SCHEDULES))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_optimizer(
    model: nn.Module, cfg: TrialConfig, num_train: int, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer named by cfg.optimizer and its per-step learning-rate scheduler.

    num_train: number of training examples (IVON's effective sample size unless
    cfg.ivon_ess is set); steps_per_epoch: optimizer steps per epoch (for the schedule).
    """
    if (
        isinstance(steps_per_epoch, bool)
        or not isinstance(steps_per_epoch, int)
        or steps_per_epoch < 1
    ):
        raise ValueError(f"steps_per_epoch={steps_per_epoch!r}: must be an integer >= 1")
    groups = param_groups(model, cfg)
    name = cfg.optimizer
    if name == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(groups, lr=cfg.lr, fused=True)
    elif name == "sgd":
        opt = torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, fused=True
        )
    elif name == "ivon":
        if _ivon is None:  # pragma: no cover
            raise ConfigError("optimizer='ivon' needs the ivon-opt package (pip install ivon-opt)")
        ess = float(cfg.ivon_ess) if cfg.ivon_ess is not None else float(num_train)
        if not ess > 0:
            raise ConfigError(
                f"ivon_ess=None and num_train={num_train!r}: IVON's effective sample size "
                "must be > 0; set ivon_ess or pass the number of training examples"
            )
        opt = _ivon.IVON(
            groups,
            lr=cfg.lr,
            ess=ess,
            hess_init=cfg.ivon_hess_init,
            weight_decay=cfg.ivon_weight_decay,  # the groups carry it (fast: 0)
            mc_samples=cfg.ivon_train_samples,
        )
    else:
        raise ConfigError(refusal("optimizer", name, OPTIMIZERS))
    return opt, build_scheduler(opt, cfg, steps_per_epoch)


# A forward pass's context: core.runtime.Runtime.autocast (bf16 autocast) or nothing (fp32).
Autocast = Callable[[], contextlib.AbstractContextManager]


def _trainable_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]


def _fill_missing_grads(params: Iterable[torch.Tensor]) -> None:
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)


def _ivon_discard_samples(optimizer: torch.optim.Optimizer) -> None:
    """Forget the gradient samples IVON collected (after a non-finite loss)."""
    reset = getattr(optimizer, "_reset_samples", None)
    if callable(reset):
        reset()


@torch.no_grad()
def _mean_weight_logits(model: nn.Module, x: torch.Tensor, autocast: Autocast) -> torch.Tensor:
    """IVON's logits at its mean weights in training mode (batch statistics, as Adam's and
    SGD's training pass), fp32, leaving every buffer (the norms' running statistics) as it
    was: the training trajectory is the one without this pass."""
    saved = [b.detach().clone() for b in model.buffers()]
    with autocast():
        logits = model(x)
    for b, s in zip(model.buffers(), saved, strict=True):
        b.copy_(s)
    return logits.float()


def _forward_backward(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrialConfig,
    autocast: Autocast,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the gradients, forward under `autocast()`, the loss on the fp32 logits, backward
    outside the context; returns (loss, logits)."""
    optimizer.zero_grad(set_to_none=True)
    with autocast():
        logits = model(x)
    logits = logits.float()
    loss = ensemble_loss(logits, y, cfg.ensemble)
    loss.backward()
    return loss, logits


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrialConfig,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    autocast: Autocast = contextlib.nullcontext,
) -> tuple[float, torch.Tensor]:
    """One optimisation step on a batch; returns (loss value, logits (M, B, K) detached, fp32).

    For ``mimo`` the step trains on `core.layers.mimo.mimo_batch`'s rows (each member its own
    shuffle of the batch repeated cfg.mimo_batch_repeat times), and the logits returned are
    each member's on one of its passes over each of the B images (`mimo_align`).

    The forward pass runs inside `autocast()` (bf16 autocast for precision bf16: see
    core.runtime); the loss is taken on the logits cast to fp32 and the backward pass runs
    outside the context, so gradients and the update are fp32 (no scaling: bf16's range is
    fp32's). For IVON the context is entered inside each `sampled_params` context.

    The loss is core.metrics.ensemble_loss for cfg.ensemble (a sum over members for ``deep``,
    a mean otherwise); the value returned is the mean over members of their mean
    cross-entropy for every kind of ensemble (core.metrics.reported_loss). The loss and the
    logits are those of the weights the step starts from, in training mode, for every
    optimizer: for IVON its mean weights (`_mean_weight_logits`, one extra forward pass
    without gradients), not the sampled weights its gradient is taken at, so that its
    training accuracy is measured as Adam's and SGD's is and at the weights its validation
    and test predictions use (ivon_test_samples 0). Whether the step diverged is judged on
    the sampled losses, which drive the update.
    Gradients are clipped to global norm cfg.grad_clip when set. The scheduler (if given) is
    stepped once. If the loss is NaN or infinite no parameter update is made (the weights stay
    those of the last finite step) and the non-finite value is returned: the caller decides
    what to do (the trainable ends the trial with diverged=True).
    """
    model.train()
    params = _trainable_params(optimizer)
    batch, rows = len(y), None
    if cfg.ensemble == "mimo":  # M shuffled inputs per row (core.layers.mimo)
        x, y, rows = mimo_batch(x, y, cfg.ensemble_size, cfg.mimo_rho, cfg.mimo_batch_repeat)
    if is_ivon(optimizer):
        losses = []
        logits = _mean_weight_logits(model, x, autocast)
        for _ in range(cfg.ivon_train_samples):
            with optimizer.sampled_params(train=True):
                loss, _ = _forward_backward(model, optimizer, x, y, cfg, autocast)
                _fill_missing_grads(params)  # ivon-opt reads p.grad of every parameter
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            losses.append(loss.detach())
        loss_value = float(torch.stack(losses).mean())
        if math.isfinite(loss_value):
            optimizer.step()
            loss_value = float(ensemble_loss(logits, y, cfg.ensemble))  # at the mean weights
        else:
            _ivon_discard_samples(optimizer)
        optimizer.zero_grad(set_to_none=True)
    else:
        loss, logits = _forward_backward(model, optimizer, x, y, cfg, autocast)
        loss_value = float(loss.detach())
        if math.isfinite(loss_value):
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if scheduler is not None and math.isfinite(loss_value):
        scheduler.step()
    logits = logits.detach() if rows is None else mimo_align(logits.detach(), rows, batch)
    return reported_loss(loss_value, logits.shape[0], cfg.ensemble), logits


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    x: torch.Tensor,
    cfg: TrialConfig,
    autocast: Autocast = contextlib.nullcontext,
) -> torch.Tensor:
    """Member probabilities (M, B, K), fp32, in eval mode without gradients.

    The forward pass runs inside `autocast()` (see `train_step`); the softmax is taken on the
    logits cast to fp32, so metrics never see bf16 probabilities.

    For IVON with cfg.ivon_test_samples == k > 0: the member probabilities averaged over k
    weight samples drawn with ``optimizer.sampled_params()``; with k == 0 (and for every
    other optimizer, or optimizer=None) the prediction at the current (mean) weights.
    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        k = cfg.ivon_test_samples
        if is_ivon(optimizer) and k > 0:
            total = None
            for _ in range(k):
                with optimizer.sampled_params(train=False), autocast():
                    logits = model(x)
                p = torch.softmax(logits.float(), dim=-1)
                total = p if total is None else total + p
            return total / k
        with autocast():
            logits = model(x)
        return torch.softmax(logits.float(), dim=-1)
    finally:
        model.train(was_training)


def optimizer_state_dict(optimizer: torch.optim.Optimizer) -> dict:
    """optimizer.state_dict() plus what it misses (ivon-opt's step counter)."""
    state = {"optimizer": optimizer.state_dict()}
    if is_ivon(optimizer):
        state["ivon_current_step"] = int(optimizer.current_step)
    return state


def load_optimizer_state_dict(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Inverse of `optimizer_state_dict` (also accepts a plain optimizer.state_dict()).

    Per-parameter state (Adam's moments, SGD's momentum) is given its parameter's memory
    layout: the fused steps walk parameter, gradient and state as one flat array each, so a
    channels_last checkpoint resumed contiguous (or the reverse) would mix up elements.
    """
    optimizer.load_state_dict(state.get("optimizer", state))
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if (
                    isinstance(value, torch.Tensor)
                    and value.shape == p.shape
                    and value.stride() != p.stride()
                ):
                    optimizer.state[p][key] = torch.empty_like(p).copy_(value)
    if is_ivon(optimizer) and "ivon_current_step" in state:
        optimizer.current_step = int(state["ivon_current_step"])
