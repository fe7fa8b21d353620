"""TrialConfig: every knob of one training run, validated in one place.

A study is a set of TrialConfigs; Ray Tune hands each trial a plain dict, and
`TrialConfig.from_dict` turns it back into a checked dataclass. Every bad value is
refused here with one message naming the field, the value and what is allowed, so a
typo fails on the driver before any cluster work starts.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from core.errors import ConfigError, refusal

DATASETS = ("cifar10", "cifar20", "imagefolder")
ARCHS = ("simple_cnn", "vgg11", "vgg11_share")
ENSEMBLES = ("single", "batch", "deep")
SHARING = ("none", "early", "deep", "all")
NORMS = ("batch", "member", "none")
OPTIMIZERS = ("adam", "sgd", "ivon")
SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda")
# The study's sweep of fast-weight init values (alpha and gamma each).
FAST_WEIGHT_SWEEP = (-1.0, -0.8, -0.5, -0.2, 0.0, 0.2, 0.5, 0.8, 1.0)


@dataclass
class TrialConfig:
    # --- data ---
    dataset: str = "cifar10"  # cifar10 | cifar20 (CIFAR-100, 20 coarse labels) | imagefolder
    data_dir: str | None = None  # dataset root; None: $ENSEMBLE_DATA_DIR, else the user cache
    train_subset: int | None = None  # stratified number of training images (None: all)
    test_subset: int | None = None  # stratified number of test images (None: all)
    val_fraction: float = 0.0  # share of train held out (stratified) as a validation split
    augment: bool = True  # random crop (4-pixel pad) and horizontal flip, on tensors
    # --- model ---
    arch: str = "vgg11"  # architecture from core.models' registry
    ensemble: str = "batch"  # single network | BatchEnsemble | deep (independent members)
    ensemble_size: int = 4  # members M; must be 1 for `single`
    alpha: float | None = 0.5  # input-side fast-weight init (see core.layers); None: frozen ones
    gamma: float | None = 0.5  # output-side fast-weight init; None: frozen ones
    sharing_network: str = "none"  # region whose same-shape layers tie slow weights
    sharing_ensemble: str = "none"  # region where all members use one layer
    norm: str = "batch"  # batch (shared stats, per-member affine) | member | none
    # --- optimisation ---
    optimizer: str = "adam"  # adam | sgd | ivon
    lr: float = 1e-3  # base learning rate (slow weights)
    momentum: float = 0.9  # SGD momentum (IVON's beta1 is separate)
    nesterov: bool = False  # SGD Nesterov momentum
    weight_decay: float = 0.0  # on slow weights only; fast weights never decay
    fast_lr_mult: float = 0.5  # learning-rate multiplier of fast weights (uncertainty-baselines)
    schedule: str = "constant"  # constant | cosine (per step, over all epochs)
    grad_clip: float | None = None  # max global gradient norm (None: no clipping)
    batch_size: int = 128  # examples per step; never depends on ensemble_size
    epochs: int = 15  # training epochs (upper bound with early stopping)
    patience: int | None = None  # epochs without validation-loss improvement before stopping
    ivon_ess: float | None = None  # IVON effective sample size (None: number of train examples)
    ivon_hess_init: float = 0.1  # IVON initial Hessian value
    ivon_train_samples: int = 1  # IVON weight samples per training step
    ivon_test_samples: int = 0  # IVON: 0 predicts at the mean, k > 0 averages k samples
    # --- run ---
    seed: int = 0  # seeds torch, numpy and the data order
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda
    num_threads: int | None = None  # torch CPU threads (None: leave torch's default)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form tags kept with the result

    # ------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialConfig:
        """Build and validate a config from a (Ray Tune) dict; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = _merge_bundles(d, names)
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; allowed fields: {sorted(names)}")
        cfg = cls(**{k: v for k, v in d.items()})
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrialConfig:
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    # ------------------------------------------------------------------
    def validate(self) -> None:
        _choice("dataset", self.dataset, DATASETS)
        _choice("arch", self.arch, ARCHS)
        _choice("ensemble", self.ensemble, ENSEMBLES)
        _choice("sharing_network", self.sharing_network, SHARING)
        _choice("sharing_ensemble", self.sharing_ensemble, SHARING)
        _choice("norm", self.norm, NORMS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("device", self.device, DEVICES)
        if self.dataset == "imagefolder" and not self.data_dir:
            raise ConfigError(
                "data_dir=None: dataset 'imagefolder' needs data_dir set to a root "
                "holding train/<class>/ and test/<class>/"
            )
        _int("ensemble_size", self.ensemble_size, lo=1)
        if self.ensemble == "single" and self.ensemble_size != 1:
            raise ConfigError(
                f"ensemble_size={self.ensemble_size}: ensemble 'single' is one network, "
                "so ensemble_size must be 1 (use ensemble 'batch' or 'deep' for more members)"
            )
        if self.ensemble != "single" and self.ensemble_size < 2:
            raise ConfigError(
                f"ensemble_size={self.ensemble_size}: ensemble '{self.ensemble}' needs at least "
                "2 members (use ensemble 'single' for one network)"
            )
        if self.ensemble == "single" and self.sharing_ensemble != "none":
            raise ConfigError(
                f"sharing_ensemble={self.sharing_ensemble!r}: a 'single' network has no members "
                "to share layers between; allowed: 'none'"
            )
        for name in ("alpha", "gamma"):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not -1.0 <= v <= 1.0:
                raise ConfigError(
                    f"{name}={v!r}: fast-weight init must be a number in [-1, 1] "
                    "(v<0: N(1,|v|), 0: ones, 0<v<=1: random signs with P(+1)=v) or None"
                )
        _pos_float("lr", self.lr)
        _float("momentum", self.momentum, lo=0.0, hi=1.0, hi_open=True)
        _float("weight_decay", self.weight_decay, lo=0.0)
        _float("fast_lr_mult", self.fast_lr_mult, lo=0.0, lo_open=True)
        if self.grad_clip is not None:
            _pos_float("grad_clip", self.grad_clip)
        _int("batch_size", self.batch_size, lo=1)
        _int("epochs", self.epochs, lo=1)
        if self.patience is not None:
            _int("patience", self.patience, lo=1)
        _float("val_fraction", self.val_fraction, lo=0.0, hi=1.0, hi_open=True)
        if self.patience is not None and self.val_fraction == 0.0:
            # Early stopping on the test set would select on test data; refuse it.
            raise ConfigError(
                f"patience={self.patience}: early stopping watches the validation loss, so "
                "val_fraction must be > 0 (e.g. 0.1)"
            )
        for name in ("train_subset", "test_subset"):
            v = getattr(self, name)
            if v is not None:
                _int(name, v, lo=1)
        if self.ivon_ess is not None:
            _pos_float("ivon_ess", self.ivon_ess)
        _pos_float("ivon_hess_init", self.ivon_hess_init)
        _int("ivon_train_samples", self.ivon_train_samples, lo=1)
        _int("ivon_test_samples", self.ivon_test_samples, lo=0)
        _int("seed", self.seed, lo=0)
        if self.num_threads is not None:
            _int("num_threads", self.num_threads, lo=1)
        if not isinstance(self.extra, dict):
            raise ConfigError(f"extra={self.extra!r}: must be a dict of tags")
        # Sharing and norm validity depend on the architecture's layer table, which lives with
        # the models: run every check build_model makes, here on the driver.
        from core.models import validate_model_args

        validate_model_args(
            self.arch,
            num_classes=10,
            ensemble_size=self.ensemble_size,
            ensemble=self.ensemble,
            alpha=self.alpha,
            gamma=self.gamma,
            sharing_network=self.sharing_network,
            sharing_ensemble=self.sharing_ensemble,
            norm=self.norm,
        )


def _merge_bundles(d: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """Merge bundles: a non-field key whose value is a dict of fields.

    Ray Tune grids and Optuna suggestions can only vary one key at a time; a bundle such as
    `{"model": {"ensemble": "single", "ensemble_size": 1}}` lets one grid value set several
    fields together (only valid combinations, no cartesian product). The bundle's name is a
    label and is dropped.
    """
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


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; choose one of {list(allowed)}")


def _int(name: str, value: Any, lo: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r}: must be an integer")
    if lo is not None and value < lo:
        raise ConfigError(f"{name}={value!r}: must be an integer >= {lo}")


def _float(
    name: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(f"{name}={value!r}: must be a number")
    lo_s = "(" if lo_open else "["
    hi_s = ")" if hi_open else "]"
    rng = f"{lo_s}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{hi_s}"
    bad = (
        (lo is not None and (value <= lo if lo_open else value < lo))
        or (hi is not None and (value >= hi if hi_open else value > hi))
        or math.isinf(value)
    )
    if bad:
        raise ConfigError(f"{name}={value!r}: must be in {rng}")


def _pos_float(name: str, value: Any) -> None:
    _float(name, value, lo=0.0, lo_open=True)


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
    base = [a for a in args if a is not type(None)][0] if args else tp
    try:
        if base is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes")
        if base is int:
            return int(raw)
        if base is float:
            return float(raw)
    except ValueError:
        raise ConfigError(refusal(name, raw, f"a {base.__name__}")) from None
    return raw
