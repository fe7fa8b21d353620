"""TrialConfig: every knob of one training run, and every rule about its values, in one place.

A study is a set of TrialConfigs; Ray Tune hands each trial a plain dict, and
`TrialConfig.from_dict` turns it back into a checked dataclass. Each field declares its allowed
values next to it (`knob(default, check)`, the vocabulary of `core.checks`); the model fields
are `core.spec.ModelSpec`'s, declared there (`TrialConfig.model` is the ModelSpec). The rules
that tie fields together follow in `TrialConfig.validate`, and the model rules in
`core.spec.check_model`, which `core.models.build_model` runs too. Every bad value is refused
with one message naming the field, the value and what is allowed (`core.errors.refusal`), so a
typo fails on the driver before any cluster work starts.
Code below a validated config trusts it.

This module is torch-free: checking a config imports no model code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from core.architectures import SHARING
from core.checks import POSITIVE, flag, integer, knob, number, one_of, tags, text_or_none
from core.errors import ConfigError, refusal
from core.spec import (
    ENSEMBLES,
    MAX_ENSEMBLE_SIZE,
    MODEL_FIELDS,
    NORMS,
    ModelSpec,
    check_model,
    valid_sharing_regimes,
)

__all__ = [
    "DATASETS",
    "DEVICES",
    "PRECISIONS",
    "SWITCHES",
    "ENSEMBLES",
    "OOD_DATASETS",
    "FAST_WEIGHT_SWEEP",
    "MAX_ENSEMBLE_SIZE",
    "MAX_EPOCHS",
    "NORMS",
    "OPTIMIZERS",
    "merge_bundles",
    "SCHEDULES",
    "SHARING",
    "ConfigError",
    "ModelSpec",
    "TrialConfig",
    "allowed_values",
    "check_field",
    "check_model",
    "parse_field",
    "valid_sharing_regimes",
]

DATASETS = ("cifar10", "cifar20", "imagefolder")
OPTIMIZERS = ("adam", "sgd", "ivon")
SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda")
# How a trial computes on its device (core.runtime resolves 'auto' per device).
PRECISIONS = ("auto", "fp32", "bf16")
SWITCHES = ("auto", "on", "off")  # channels_last and compile
OOD_DATASETS = ("fashion_mnist", "imagefolder", "none")
# The study's sweep of fast-weight init values (alpha and gamma each).
FAST_WEIGHT_SWEEP = (-1.0, -0.8, -0.5, -0.2, 0.0, 0.2, 0.5, 0.8, 1.0)
# Upper bounds no researcher hits legitimately; they turn a typo (an extra digit, a pasted
# 99999999999999999999) into a refusal instead of a run that never ends or an OverflowError.
MAX_EPOCHS = 10_000  # days per trial even for simple_cnn on CIFAR
MAX_BATCH_SIZE = 65_536  # larger than CIFAR's 50,000 training images
MAX_SUBSET = 100_000_000  # examples; more than any image folder this code can hold in memory
MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_SAMPLES = 10_000  # IVON weight samples per step or per prediction
MAX_THREADS = 1_024  # torch CPU threads


def model_knob(name: str) -> Any:
    """A TrialConfig field that is ModelSpec's field `name`: default and check declared there."""
    spec_field = MODEL_FIELDS[name]
    return field(default=spec_field.default, metadata=spec_field.metadata)


# ----------------------------------------------------------------------------------------------
# the config
# ----------------------------------------------------------------------------------------------
@dataclass
class TrialConfig:
    # --- data ---
    # cifar10 | cifar20 (CIFAR-100, 20 coarse labels) | imagefolder
    dataset: str = knob("cifar10", one_of(DATASETS))
    # dataset root; None: $ENSEMBLE_DATA_DIR, else the user cache
    data_dir: str | None = knob(None, text_or_none)
    # stratified number of training images (None: all)
    train_subset: int | None = knob(None, integer(lo=1, hi=MAX_SUBSET, optional=True))
    # stratified number of test images (None: all)
    test_subset: int | None = knob(None, integer(lo=1, hi=MAX_SUBSET, optional=True))
    # share of train held out (stratified) as a validation split
    val_fraction: float = knob(0.0, number(lo=0.0, hi=1.0, hi_open=True))
    # seed of the train/validation split and the subsets (core.data.load_for_config). 0: one
    # split for every trial of a study (what the cpu preset's committed findings ran with);
    # None: the trial's seed, so that seed spread includes the data split, as a repeat of the
    # experiment would (the learn preset). The loader's order and augmentation follow `seed`.
    split_seed: int | None = knob(0, integer(lo=0, hi=MAX_SEED, optional=True))
    # random crop (4-pixel pad) and horizontal flip, on tensors
    augment: bool = knob(True, flag)
    # --- model: core.spec.ModelSpec declares each field's meaning, default and check ---
    arch: str = model_knob("arch")
    ensemble: str = model_knob("ensemble")
    ensemble_size: int = model_knob("ensemble_size")
    alpha: float | None = model_knob("alpha")
    gamma: float | None = model_knob("gamma")
    sharing_network: str = model_knob("sharing_network")
    sharing_ensemble: str = model_knob("sharing_ensemble")
    norm: str = model_knob("norm")
    packed_width: float = model_knob("packed_width")
    packed_groups: int = model_knob("packed_groups")
    mimo_rho: float = model_knob("mimo_rho")
    mimo_batch_repeat: int = model_knob("mimo_batch_repeat")
    # --- optimisation ---
    # adam | sgd | ivon
    optimizer: str = knob("adam", one_of(OPTIMIZERS))
    # base learning rate (slow weights)
    lr: float = knob(1e-3, POSITIVE)
    # SGD momentum (IVON's beta1 is separate)
    momentum: float = knob(0.9, number(lo=0.0, hi=1.0, hi_open=True))
    # SGD Nesterov momentum
    nesterov: bool = knob(False, flag)
    # Adam/SGD, on slow weights only; fast weights never decay (IVON: ivon_weight_decay)
    weight_decay: float = knob(0.0, number(lo=0.0))
    # learning-rate multiplier of fast weights (uncertainty-baselines)
    fast_lr_mult: float = knob(0.5, POSITIVE)
    # constant | cosine (per step, over all epochs)
    schedule: str = knob("constant", one_of(SCHEDULES))
    # max global gradient norm (None: no clipping)
    grad_clip: float | None = knob(None, number(lo=0.0, lo_open=True, optional=True))
    # examples per step; never depends on ensemble_size
    batch_size: int = knob(128, integer(lo=1, hi=MAX_BATCH_SIZE))
    # training epochs (upper bound with early stopping)
    epochs: int = knob(15, integer(lo=1, hi=MAX_EPOCHS))
    # epochs without validation-loss improvement before stopping
    patience: int | None = knob(None, integer(lo=1, hi=MAX_EPOCHS, optional=True))
    # IVON effective sample size (None: number of train examples, the authors' recipe)
    ivon_ess: float | None = knob(None, number(lo=0.0, lo_open=True, optional=True))
    # IVON initial Hessian value (authors' CIFAR recipe: 0.5; see core.optim)
    ivon_hess_init: float = knob(0.5, POSITIVE)
    # IVON weight decay delta = prior precision, slow weights (CIFAR recipe: 2e-4)
    ivon_weight_decay: float = knob(2e-4, number(lo=0.0))
    # IVON weight samples per training step
    ivon_train_samples: int = knob(1, integer(lo=1, hi=MAX_SAMPLES))
    # IVON: 0 predicts at the mean, k > 0 averages k samples (recipe: 0, or 64)
    ivon_test_samples: int = knob(0, integer(lo=0, hi=MAX_SAMPLES))
    # --- robustness (core.corruptions, core.ood; measured at the end of the trial) ---
    # corrupted test sets and OOD detection at the end of every trial
    robustness: bool = knob(True, flag)
    # test images per corruption x severity (55 sets), stratified (at most the test set)
    corruption_subset: int = knob(100, integer(lo=1, hi=MAX_SUBSET))
    # OOD images scored against the clean test set (at most the OOD set)
    ood_subset: int = knob(1000, integer(lo=1, hi=MAX_SUBSET))
    # far-OOD set: fashion_mnist (Debian's dataset-fashion-mnist) | imagefolder | none
    ood_dataset: str = knob("fashion_mnist", one_of(OOD_DATASETS))
    # OOD data folder (imagefolder: required; fashion_mnist: overrides the default place)
    ood_dir: str | None = knob(None, text_or_none)
    # also every k epochs (0: at the end only)
    robustness_every: int = knob(0, integer(lo=0, hi=MAX_EPOCHS))
    # --- run ---
    # seeds torch, numpy and the data order
    seed: int = knob(0, integer(lo=0, hi=MAX_SEED))
    # auto (CUDA when present) | cpu | cuda
    device: str = knob("auto", one_of(DEVICES))
    # torch CPU threads (None: leave torch's default)
    num_threads: int | None = knob(None, integer(lo=1, hi=MAX_THREADS, optional=True))
    # --- how the trial computes (core.runtime: 'auto' resolved per device, once per trial) ---
    # On a CPU, auto is bf16 + channels_last where torch detects native bf16 matrix units
    # (AMX, AVX512-BF16), measured 1.4-2.6x fp32's images/s (benchmarks/README.md, "bf16 on
    # the CPU"), else fp32 (bf16 is emulated there). The CUDA autos follow what each is known
    # to do on Ampere-and-newer GPUs (not yet timed on a GPU here).
    # auto | fp32 | bf16: bf16 autocast of the forward pass and loss (weights, gradients,
    # optimizer state and metrics stay fp32; no gradient scaling: bf16 has fp32's range).
    # auto: bf16 on a CUDA GPU with native bf16 (Ampere and newer: tensor-core matmuls and
    # convs, half the activation memory) and on a CPU with bf16 units; fp32 on other CPUs and
    # on older GPUs (bf16 refused there)
    precision: str = knob("auto", one_of(PRECISIONS))
    # auto | on | off: model and input batches in torch.channels_last (NHWC) memory format.
    # auto: on for CUDA (cuDNN's NHWC kernels use tensor cores without transposes, the layout
    # bf16 convs want) and with bf16 on a CPU (oneDNN's fastest bf16 convs), off with fp32
    channels_last: str = knob("auto", one_of(SWITCHES))
    # auto | on | off: torch.compile the model (inductor). auto: on for CUDA when triton is
    # installed (fuses BatchEnsemble's per-member scale/shift, norm and ReLU passes), off on
    # CPU: measured not to pay within a trial (a BatchEnsemble's step 10% faster, repaid after
    # ~2,800 steps from a warm cache; benchmarks/README.md, "bf16 on the CPU"). Checkpoints hold the
    # uncompiled module's state_dict either way. When on, the first epoch's timing includes it.
    compile: str = knob("auto", one_of(SWITCHES))
    # free-form tags kept with the result
    extra: dict[str, Any] = knob(dict, tags)

    # ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialConfig:
        """Build and validate a config from a (Ray Tune) dict; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = merge_bundles(d)
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; allowed fields: {sorted(names)}")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    @property
    def model(self) -> ModelSpec:
        """The model settings (deep_impl, not a TrialConfig field, at ModelSpec's default)."""
        return ModelSpec(**{name: getattr(self, name) for name in _MODEL_FIELDS})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrialConfig:
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    # ------------------------------------------------------------------
    def validate(self) -> None:
        """Every field's own check, then the rules between fields."""
        for f in dataclasses.fields(self):
            if f.name not in _MODEL_FIELDS:
                f.metadata["check"](f.name, getattr(self, f.name))
        check_model(self.model)
        if self.dataset == "imagefolder" and not self.data_dir:
            raise ConfigError(
                refusal(
                    "data_dir",
                    None,
                    "a root holding train/<class>/ and test/<class>/",
                    "dataset 'imagefolder' needs data_dir set",
                )
            )
        if self.robustness and self.ood_dataset == "imagefolder" and not self.ood_dir:
            raise ConfigError(
                refusal(
                    "ood_dir",
                    None,
                    "a folder of OOD image files",
                    "ood_dataset 'imagefolder' needs ood_dir set",
                )
            )
        if self.optimizer == "sgd" and self.nesterov and self.momentum <= 0:
            raise ConfigError(
                refusal("momentum", self.momentum, "> 0", "nesterov=True needs momentum")
            )
        if self.optimizer == "ivon" and self.weight_decay != 0.0:
            raise ConfigError(
                refusal(
                    "weight_decay",
                    self.weight_decay,
                    "0 with optimizer 'ivon' (set ivon_weight_decay, IVON's prior precision)",
                    "IVON's weight decay is its Gaussian prior and has its own field",
                )
            )
        if self.patience is not None and self.val_fraction == 0.0:
            # Early stopping on the test set would select on test data; refuse it.
            raise ConfigError(
                refusal(
                    "patience",
                    self.patience,
                    "val_fraction > 0 (e.g. 0.1), or patience None",
                    "early stopping watches the validation loss",
                )
            )


def allowed_values(name: str) -> str:
    """What field `name` allows, in words: the phrase its check refuses with."""
    allowed = getattr(_FIELDS[name].metadata["check"], "allowed", "")
    return allowed() if callable(allowed) else allowed


def check_field(name: str, value: Any) -> None:
    """The check TrialConfig declares for field `name`."""
    _FIELDS[name].metadata["check"](name, value)


def merge_bundles(d: dict[str, Any]) -> dict[str, Any]:
    """Merge bundles: a non-field key whose value is a dict of TrialConfig fields.

    Ray Tune grids and Optuna suggestions can only vary one key at a time; a bundle such as
    `{"model": {"ensemble": "single", "ensemble_size": 1}}` lets one grid value set several
    fields together (only valid combinations, no cartesian product). The bundle's name is a
    label and is dropped.
    """
    names = {f.name for f in dataclasses.fields(TrialConfig)}
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k not in names and isinstance(v, dict) and v and set(v) <= names:
            for kk, vv in v.items():
                if kk in out and out[kk] != vv:
                    raise ConfigError(f"{kk}: set twice ({out[kk]!r} and {vv!r}) via bundle {k!r}")
                out[kk] = vv
        else:
            if k in out and out[k] != v:
                raise ConfigError(f"{k}: set twice ({out[k]!r} and {v!r})")
            out[k] = v
    return out


def parse_field(name: str, raw: str) -> Any:
    """A command-line string as the value of TrialConfig field `name` (`none` gives None
    where the field allows it)."""
    hints = typing.get_type_hints(TrialConfig)
    if name not in hints or name == "extra":
        allowed = sorted(k for k in hints if k != "extra")
        raise ConfigError(f"unknown config field {name!r}; allowed fields: {allowed}")
    tp = hints[name]
    args = typing.get_args(tp)
    optional = type(None) in args or (isinstance(tp, types.UnionType) and type(None) in args)
    if optional and raw.lower() == "none":
        return None
    value_type = [a for a in args if a is not type(None)][0] if args else tp
    try:
        if value_type is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes")
        if value_type is int:
            return int(raw)
        if value_type is float:
            return float(raw)
    except ValueError:
        raise ConfigError(refusal(name, raw, f"a {value_type.__name__}")) from None
    return raw


_FIELDS = {f.name: f for f in dataclasses.fields(TrialConfig)}
# the TrialConfig fields that are ModelSpec's (its checks run together in check_model)
_MODEL_FIELDS = tuple(name for name in _FIELDS if name in MODEL_FIELDS)
