"""The builder: a `ModelSpec` (core.spec) as an `EnsembleNet` (core.network), one network, a
BatchEnsemble, a deep ensemble, a Packed-Ensemble or a MIMO network.

The ensemble kinds are one registry, `ENSEMBLE_LAYERS`: kind -> the layer types its members
use (timm style `LayerTypes`). A new kind is one layer file in `core.layers` and one entry
here (and its name in `core.spec.ENSEMBLES`).

Initialisation: every layer initialises itself in its constructor (PyTorch defaults for slow
weights, `core.layers.init_fast_weight` for fast weights). There is deliberately no model-level
init loop, so the requested alpha/gamma init is never overwritten.

The rules of which settings go together are `core.spec.check_model`'s; `build_model` runs
them, `model_for_config` trusts a validated TrialConfig.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from torch import nn

from core.architectures import (
    ARCHITECTURES,
    ArchSpec,
    Conv,
    shared_layer_names,
    tie_groups,
)
from core.checks import COUNT
from core.layers import (
    BEBatchNorm2d,
    BEConv2d,
    BELinear,
    DeepConv2d,
    DeepLinear,
    MemberBatchNorm2d,
    MIMOConv2d,
    MIMOLinear,
    PackedConv2d,
    PackedLinear,
    packed_channels,
)
from core.network import (
    DEEP_IMPL_AUTO,
    ClassifierBlock,
    ConvBlock,
    EnsembleNet,
    FusedConvBlock,
    resolve_deep_impl,
)
from core.spec import ModelSpec, check_model

if TYPE_CHECKING:
    from core.config import TrialConfig

__all__ = [
    "DEEP_IMPL_AUTO",
    "ENSEMBLE_LAYERS",
    "EnsembleNet",
    "LayerTypes",
    "ModelSpec",
    "build_model",
    "count_parameters",
    "model_for_config",
    "resolve_deep_impl",
    "tie_slow_weights",
]


# ----------------------------------------------------------------------------------------------
# layer types: the registry of ensemble kinds
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerTypes:
    """The layer constructors a builder uses (timm style), and the activation layouts the
    constructed layers expect (`core.network`): `layout` for the conv trunk,
    `classifier_layout` for the classifier."""

    conv: Callable[..., nn.Module]  # (in, out, kernel_size, stride, padding, bias) -> module
    norm: Callable[[int], nn.Module]  # (channels) -> module
    linear: Callable[[int, int], nn.Module]  # (in, out) -> module
    layout: str
    classifier_layout: str
    # the conv of the network's first layer (it takes the untiled images), if it differs:
    # Packed-Ensembles' ungrouped first layer, MIMO's M stacked inputs. None: `conv`, its
    # input tiled to `layout`.
    first_conv: Callable[..., nn.Module] | None = None


def _ordinary(layout: str) -> LayerTypes:
    def conv(i, o, k, s, p, bias):
        return nn.Conv2d(i, o, k, stride=s, padding=p, bias=bias)

    return LayerTypes(conv, nn.BatchNorm2d, nn.Linear, layout, layout)


def _single(spec: ModelSpec) -> LayerTypes:
    return _ordinary("shared")


def _batch_ensemble(spec: ModelSpec) -> LayerTypes:
    m, alpha, gamma = spec.ensemble_size, spec.alpha, spec.gamma

    def conv(i, o, k, s, p, bias):
        return BEConv2d(i, o, k, m, stride=s, padding=p, alpha=alpha, gamma=gamma, bias=bias)

    def linear(i, o):
        return BELinear(i, o, m, alpha=alpha, gamma=gamma)

    norm_type = BEBatchNorm2d if spec.norm == "batch" else MemberBatchNorm2d
    return LayerTypes(conv, partial(norm_type, ensemble_size=m), linear, "member", "member")


def _deep_ensemble(spec: ModelSpec) -> LayerTypes:
    m = spec.ensemble_size

    def conv(i, o, k, s, p, bias):
        return DeepConv2d(i, o, k, m, stride=s, padding=p, bias=bias)

    def linear(i, o):
        return DeepLinear(i, o, m)

    # A deep trunk runs channel-stacked; its classifier takes member-major rows.
    norm = partial(MemberBatchNorm2d, ensemble_size=m, channel_stacked=True)
    return LayerTypes(conv, norm, linear, "channel", "member")


def _packed_ensemble(spec: ModelSpec) -> LayerTypes:
    m, width, sub = spec.ensemble_size, spec.packed_width, spec.packed_groups
    packed = partial(PackedConv2d, ensemble_size=m, width=width, subgroups=sub)

    def conv(i, o, k, s, p, bias, first=False):
        return packed(i, o, k, stride=s, padding=p, bias=bias, first=first)

    def norm(c):  # per channel of the widened layer, so per member
        return nn.BatchNorm2d(packed_channels(c, width, m * sub))

    def linear(i, o):
        return PackedLinear(i, o, m, width=width, subgroups=sub)

    return LayerTypes(conv, norm, linear, "channel", "channel", partial(conv, first=True))


def _mimo(spec: ModelSpec) -> LayerTypes:
    m = spec.ensemble_size
    ordinary = _ordinary("shared")  # one body for all members

    def first_conv(i, o, k, s, p, bias):
        return MIMOConv2d(i, o, k, m, stride=s, padding=p, bias=bias)

    def linear(i, o):
        return MIMOLinear(i, o, m)

    return dataclasses.replace(
        ordinary, linear=linear, classifier_layout="channel", first_conv=first_conv
    )


# ensemble kind (core.spec.ENSEMBLES) -> the layer types of its per-member layers
ENSEMBLE_LAYERS: dict[str, Callable[[ModelSpec], LayerTypes]] = {
    "single": _single,
    "batch": _batch_ensemble,
    "deep": _deep_ensemble,
    "packed": _packed_ensemble,
    "mimo": _mimo,
}


# ----------------------------------------------------------------------------------------------
# build_model
# ----------------------------------------------------------------------------------------------
def build_model(
    spec: ModelSpec | str,
    num_classes: int,
    *,
    in_channels: int = 3,
    fuse: bool = True,
    **settings: Any,
) -> EnsembleNet:
    """Build a `ModelSpec`: `build_model(ModelSpec(...), 10)`, or with the architecture's name
    and the other ModelSpec fields as keywords, `build_model("vgg11", 10, ensemble_size=4)`.

    * single: ordinary layers; ensemble_size must be 1; output (1, B, K).
    * batch:  BatchEnsemble layers (`BEConv2d`, `BELinear`) everywhere, fast weights initialised
              from `alpha` / `gamma` (see `core.layers.init_fast_weight`); norm `batch` =
              shared statistics with per-member affine, `member` = fully per-member, `none`.
    * deep:   ensemble_size independent members stacked in every parameter (member m owns
              `param[m]`, or channel block m of norm statistics), its trunk computed as grouped
              convolutions or as a loop over members (`deep_impl`, see `core.network`).
    * packed: Packed-Ensembles (`core.layers.packed`): every layer's channels times
              `packed_width`, grouped into ensemble_size * `packed_groups` groups (the first
              layer ungrouped on the images, the classifier grouped by member); no sharing.
    * mimo:   MIMO (`core.layers.mimo`): one ordinary network whose first conv takes the M
              members' inputs stacked on the channel axis and whose classifier gives M heads;
              images (B, C, H, W) are every member's input, (M, B, C, H, W) one per member.

    `sharing_network` ties same-shape slow weights inside a region; `sharing_ensemble` makes a
    region one ordinary layer for all members (computed untiled when it starts at the input).
    See `core.architectures`. Every bad setting raises `ConfigError` (`core.spec.check_model`).
    `fuse=False` computes BatchEnsemble conv blocks layer by layer instead of fused
    (`core.layers.fused`; same function and state_dict, for tests and benchmarks).
    """
    if isinstance(spec, str):
        spec = ModelSpec(arch=spec, **settings)
    elif settings:
        raise TypeError(f"build_model: a ModelSpec and settings {sorted(settings)}; pass one")
    check_model(spec)
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        COUNT(name, value)
    return _build(spec, num_classes, in_channels, fuse)


def model_for_config(cfg: TrialConfig, num_classes: int, in_channels: int) -> EnsembleNet:
    """The model of a validated TrialConfig (its rules are not checked again)."""
    return _build(cfg.model, num_classes, in_channels, fuse=True)


def _layer_types(spec: ModelSpec, arch: ArchSpec) -> dict[str, LayerTypes]:
    """Layer types per layer, in table order: a layer all members share runs untiled
    (`shared`) until the first per-member layer, and tiled (`member`) after it."""
    if spec.ensemble == "single":
        shared = {layer.name for layer in arch.layers}
    else:
        shared = shared_layer_names(arch, spec.sharing_ensemble)
    member_types = ENSEMBLE_LAYERS[spec.ensemble](spec)
    types: dict[str, LayerTypes] = {}
    tiled = False
    for layer in arch.layers:
        if layer.name in shared:
            types[layer.name] = _ordinary("member" if tiled else "shared")
        else:
            tiled = True
            types[layer.name] = member_types
    return types


def _conv_block(
    conv: nn.Module, norm: nn.Module, pool: bool, after_shared: bool, fuse: bool
) -> nn.Module:
    """A ConvBlock, or a FusedConvBlock for a bias-free BEConv2d and a BEBatchNorm2d (which
    takes the untiled input when it follows the `shared` layout)."""
    if fuse and type(conv) is BEConv2d and type(norm) is BEBatchNorm2d and conv.bias is None:
        return FusedConvBlock(conv, norm, pool, shared_input=after_shared)
    return ConvBlock(conv, norm, pool)


def _blocks(
    arch: ArchSpec, types: dict[str, LayerTypes], num_classes: int, norm: str, fuse: bool
) -> list[tuple[str, nn.Module, str]]:
    """The blocks of a conv net from its table: (name, block, layout)."""
    blocks = []
    layout = "shared"
    for layer in arch.layers:
        t = types[layer.name]
        if isinstance(layer, Conv):
            args = (layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride)
            make_conv = t.first_conv if not blocks and t.first_conv else t.conv
            conv = make_conv(*args, layer.padding, norm == "none")
            nrm = nn.Identity() if norm == "none" else t.norm(layer.out_channels)
            after_shared = layout == "shared" and t.layout == "member"
            block = _conv_block(conv, nrm, layer.pool, after_shared, fuse)
            layout = t.layout
        else:
            block = ClassifierBlock(t.linear(layer.in_features, num_classes))
            layout = t.classifier_layout
        blocks.append((layer.name, block, layout))
    return blocks


def _link_alpha_carriers(blocks: list[tuple[str, nn.Module, str]]) -> None:
    """Let a fused block apply the next one's alpha (FusedConvBlock.carry_alpha_to) where
    nothing is between them: no pooling, both member-major."""
    for (_, first, layout_a), (_, second, layout_b) in zip(blocks, blocks[1:], strict=False):
        if not (isinstance(first, FusedConvBlock) and isinstance(second, FusedConvBlock)):
            continue
        if first.pool or layout_a != "member" or layout_b != "member":
            continue
        if second.conv.alpha_init is not None:
            first.carry_alpha_to(second)


def _build(spec: ModelSpec, num_classes: int, in_channels: int, fuse: bool) -> EnsembleNet:
    arch = ARCHITECTURES[spec.arch]
    first_conv = arch.layers[0]
    if isinstance(first_conv, Conv) and first_conv.in_channels != in_channels:
        arch = dataclasses.replace(
            arch,
            layers=(dataclasses.replace(first_conv, in_channels=in_channels), *arch.layers[1:]),
        )
    blocks = _blocks(arch, _layer_types(spec, arch), num_classes, spec.norm, fuse)
    _link_alpha_carriers(blocks)
    groups = tie_groups(arch, spec.sharing_network)
    model = EnsembleNet(
        spec, arch, blocks, num_classes=num_classes, in_channels=in_channels, tie_groups=groups
    )
    tie_slow_weights(model, groups)
    return model


def tie_slow_weights(model: EnsembleNet, groups: list[tuple[str, ...]]) -> None:
    """Make every layer of each group use the first layer's `weight` Parameter (same object).

    Only `weight` is replaced: fast weights, biases and norms stay per layer.
    """
    for group in groups:
        mods = [_weight_owner(model.blocks[name]) for name in group]
        first = mods[0]
        for name, mod in zip(group[1:], mods[1:], strict=True):
            if type(mod) is not type(first) or mod.weight.shape != first.weight.shape:
                raise ValueError(f"cannot tie {group[0]} and {name}: different layer or shape")
            mod.weight = first.weight


def _weight_owner(block: nn.Module) -> nn.Module:
    return block.conv if hasattr(block, "conv") else block.linear


def count_parameters(model: nn.Module) -> int:
    """Number of distinct trainable-parameter entries: a tied Parameter counts once; frozen
    fast weights are buffers and do not count."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
