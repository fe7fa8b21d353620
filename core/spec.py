"""ModelSpec: the settings of one model, their defaults and allowed values declared once, and
the rules between them (`check_model`).

`TrialConfig` takes its model fields from here, `core.models.build_model` builds from a
ModelSpec and `core.network.EnsembleNet` keeps the one it was built from. Torch-free: a config
is checked on the driver without importing model code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.architectures import ARCHITECTURES, SHARING, check_sharing
from core.checks import fast_weight_init, integer, knob, number, one_of
from core.errors import ConfigError, refusal

__all__ = [
    "DEEP_IMPLS",
    "ENSEMBLES",
    "KIND_OPTIONS",
    "MAX_ENSEMBLE_SIZE",
    "MODEL_FIELDS",
    "NORMS",
    "ModelSpec",
    "check_model",
    "valid_sharing_regimes",
]

ENSEMBLES = ("single", "batch", "deep", "packed", "mimo")
NORMS = ("batch", "member", "none")
DEEP_IMPLS = ("auto", "grouped", "loop")  # how a deep trunk is computed (core.network)
MAX_ENSEMBLE_SIZE = 64  # the literature stops at 16; 64 members of vgg11 need ~10 GB of weights


@dataclass(frozen=True)
class ModelSpec:
    """What to build: the architecture, the kind and size of the ensemble, and its options."""

    # architecture from core.architectures' registry
    arch: str = knob("vgg11", one_of(ARCHITECTURES))
    # single network | BatchEnsemble | deep (independent members) | packed (Packed-Ensembles)
    # | mimo (MIMO: M inputs and M heads on one network)
    ensemble: str = knob("batch", one_of(ENSEMBLES))
    # members M; must be 1 for `single`
    ensemble_size: int = knob(4, integer(lo=1, hi=MAX_ENSEMBLE_SIZE))
    # input-side fast-weight init (see core.layers.init_fast_weight); None: frozen ones
    alpha: float | None = knob(0.5, fast_weight_init)
    # output-side fast-weight init; None: frozen ones
    gamma: float | None = knob(0.5, fast_weight_init)
    # region whose same-shape layers tie slow weights (core.architectures)
    sharing_network: str = knob("none", one_of(SHARING))
    # region where all members use one layer
    sharing_ensemble: str = knob("none", one_of(SHARING))
    # batch (shared stats, per-member affine) | member | none
    norm: str = knob("batch", one_of(NORMS))
    # a deep trunk as grouped convolutions or a loop over members; auto: the faster one
    # measured for the input's device (core.network.DEEP_IMPL_AUTO). Same parameters either way.
    deep_impl: str = knob("auto", one_of(DEEP_IMPLS))
    # Packed-Ensembles' width factor alpha (not BatchEnsemble's `alpha`): every layer's
    # channels times this, shared by the M members (core.layers.packed)
    packed_width: float = knob(2.0, number(lo=1.0))
    # Packed-Ensembles' gamma (not BatchEnsemble's `gamma`): independent subgroups per member
    packed_groups: int = knob(1, integer(lo=1, hi=MAX_ENSEMBLE_SIZE))
    # MIMO's input repetition rho: the share of a training batch's rows on which every member
    # sees the same image (core.layers.mimo; the authors' CIFAR default 0)
    mimo_rho: float = knob(0.0, number(lo=0.0, hi=1.0, hi_open=True))
    # MIMO's batch repetitions b: each image is b rows of a step, the loader's batch is
    # batch_size // b (the authors' CIFAR default 4)
    mimo_batch_repeat: int = knob(4, integer(lo=1, hi=64))


# name -> dataclass field (its default, and its check in metadata["check"])
MODEL_FIELDS = {f.name: f for f in dataclasses.fields(ModelSpec)}


def check_model(spec: ModelSpec) -> None:
    """Every field's check and the rules between them; `core.models.build_model` runs this
    too, so a model is only ever built from values these rules allow."""
    for name, f in MODEL_FIELDS.items():
        f.metadata["check"](name, getattr(spec, name))
    ensemble, size, norm = spec.ensemble, spec.ensemble_size, spec.norm
    if ensemble == "single" and size != 1:
        raise ConfigError(
            refusal(
                "ensemble_size",
                size,
                "1 (use ensemble 'batch', 'deep', 'packed' or 'mimo' for more members)",
                "ensemble 'single' is one network",
            )
        )
    if ensemble != "single" and size < 2:
        raise ConfigError(
            refusal(
                "ensemble_size",
                size,
                "an integer >= 2, or ensemble 'single' for one network",
                f"ensemble {ensemble!r} needs at least 2 members",
            )
        )
    if norm == "member" and ensemble != "batch":
        raise ConfigError(
            refusal(
                "norm",
                norm,
                "'batch' or 'none'",
                f"per-member statistics are an option of the 'batch' ensemble only, not of "
                f"{ensemble!r} ('single' has one member, 'deep' and 'packed' members always have "
                "their own BatchNorm, 'mimo' members share one body)",
            )
        )
    if ensemble == "single" and spec.sharing_ensemble != "none":
        raise ConfigError(
            refusal(
                "sharing_ensemble",
                spec.sharing_ensemble,
                ["none"],
                "a 'single' network has no members to share layers between",
            )
        )
    _check_kind_options(spec)
    check_sharing(spec.arch, spec.sharing_network, spec.sharing_ensemble)


# ensemble kind -> its own settings (each refused at a changed value for the other kinds), and
# why it neither ties (sharing_network) nor shares (sharing_ensemble) layers
KIND_OPTIONS = {
    "packed": (
        ("packed_width", "packed_groups"),
        "a packed ensemble's layers are grouped convolutions of widened channels, "
        "which neither tie between layers nor share one layer between members",
    ),
    "mimo": (
        ("mimo_rho", "mimo_batch_repeat"),
        "a MIMO network's members already share every layer but the first and the "
        "classifier, whose weights take M inputs and give M heads, so nothing can tie",
    ),
}


def _check_kind_options(spec: ModelSpec) -> None:
    """A kind's own settings (KIND_OPTIONS): changed only for that kind, which ties and shares
    nothing."""
    for kind, (names, why_no_sharing) in KIND_OPTIONS.items():
        if spec.ensemble != kind:
            for name in names:
                if getattr(spec, name) != MODEL_FIELDS[name].default:
                    why = f"it is an option of ensemble {kind!r} only, not of {spec.ensemble!r}"
                    raise ConfigError(
                        refusal(name, getattr(spec, name), [MODEL_FIELDS[name].default], why)
                    )
            continue
        for name in ("sharing_network", "sharing_ensemble"):
            if getattr(spec, name) != "none":
                raise ConfigError(refusal(name, getattr(spec, name), ["none"], why_no_sharing))


def valid_sharing_regimes(arch: str, ensemble: str) -> list[tuple[str, str]]:
    """All valid (sharing_network, sharing_ensemble) pairs for `arch` and `ensemble`,
    ('none', 'none') first."""
    for name, value in (("arch", arch), ("ensemble", ensemble)):
        MODEL_FIELDS[name].metadata["check"](name, value)
    size = 1 if ensemble == "single" else 2
    out = []
    for sn in SHARING:
        for se in SHARING:
            spec = ModelSpec(
                arch=arch,
                ensemble=ensemble,
                ensemble_size=size,
                alpha=None,
                gamma=None,
                sharing_network=sn,
                sharing_ensemble=se,
            )
            try:
                check_model(spec)
            except ConfigError:
                continue
            out.append((sn, se))
    return out
