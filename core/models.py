"""Architectures and `build_model`: one network, a BatchEnsemble, or a deep ensemble.

Every architecture is ONE entry of `ARCHITECTURES`: an `ArchSpec` whose table lists each layer
with its shape, its sharing region (`early` near the input, `deep` near the output) and its
tie group (layers tied by `sharing_network`). `python -m core.sharing <arch>` prints it.

`model(x)` takes images (B, C, H, W) and returns logits (M, B, num_classes): every member sees
every example. Internally each block runs in one of three layouts (see `core.layers`):

* `plain`   (B, ...)       one computation for all members: a `single` network, and layers of
                           a `sharing_ensemble` region at the input (computed once, untiled);
* `member`  (M * B, ...)   member-major: BatchEnsemble layers, shared layers after the tiling,
                           and the `deep` ensemble's classifier;
* `channel` (B, M * C, ...) channel-stacked: a `deep` ensemble's conv trunk (grouped convs).

The model converts between layouts only where consecutive blocks differ (tiling happens once,
after the last `plain` block).

Initialisation: every layer initialises itself in its constructor (PyTorch defaults for slow
weights, `core.layers.init_fast_weight` for fast weights). There is deliberately no model-level
init loop, so the requested alpha/gamma init is never overwritten.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from core import sharing as _sharing
from core.config import ENSEMBLES, NORMS, ConfigError
from core.layers import (
    BEBatchNorm2d,
    BEConv2d,
    BELinear,
    DeepConv2d,
    DeepLinear,
    MemberBatchNorm2d,
    check_fast_weight_init,
)

__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "Classifier",
    "Conv",
    "EnsembleNet",
    "LayerTypes",
    "build_model",
    "convert_layout",
    "count_parameters",
    "validate_model_args",
]

LAYOUTS = ("plain", "member", "channel")


# ----------------------------------------------------------------------------------------------
# architecture tables
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Conv:
    """A conv -> norm -> ReLU (-> 2x2 max-pool) block."""

    name: str
    in_channels: int
    out_channels: int
    region: str  # "early" | "deep"
    tie: str | None = None  # layers with the same label tie slow weights under sharing_network
    stride: int = 1
    pool: bool = False
    kernel_size: int = 3
    padding: int = 1

    @property
    def shape(self) -> tuple:
        return (
            "conv",
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
        )

    def describe(self) -> str:
        k = self.kernel_size
        s = f" /{self.stride}" if self.stride != 1 else ""
        p = " +maxpool" if self.pool else ""
        return f"conv{k}x{k}{s} {self.in_channels}->{self.out_channels}{p}"


@dataclass(frozen=True)
class Classifier:
    """Global average pooling, then a linear layer to the classes."""

    name: str
    in_features: int
    region: str = "deep"
    tie: str | None = None

    @property
    def shape(self) -> tuple:
        return ("linear", self.in_features)

    def describe(self) -> str:
        return f"avgpool, linear {self.in_features}->K"


LayerSpec = Conv | Classifier


@dataclass(frozen=True)
class LayerTypes:
    """The layer constructors a builder uses (timm style); `layout` is the activation layout
    the constructed layers expect (see the module docstring)."""

    conv: Callable[..., nn.Module]  # (in, out, kernel_size, stride, padding, bias) -> module
    norm: Callable[[int], nn.Module]  # (channels) -> module
    linear: Callable[[int, int], nn.Module]  # (in, out) -> module
    layout: str


def convnet(
    spec: ArchSpec, num_classes: int, types_for: Callable[[LayerSpec], LayerTypes], norm: str
) -> list[tuple[str, nn.Module, str]]:
    """Build the blocks of a plain conv net from its table; returns (name, block, layout)."""
    blocks = []
    for layer in spec.layers:
        t = types_for(layer)
        if isinstance(layer, Conv):
            conv = t.conv(
                layer.in_channels,
                layer.out_channels,
                layer.kernel_size,
                layer.stride,
                layer.padding,
                norm == "none",
            )
            nrm = nn.Identity() if norm == "none" else t.norm(layer.out_channels)
            blocks.append((layer.name, ConvBlock(conv, nrm, layer.pool), t.layout))
        else:
            blocks.append(
                (layer.name, ClassifierBlock(t.linear(layer.in_features, num_classes)), t.layout)
            )
    return blocks


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: its layer table (order, shapes, regions, tie groups) and builder."""

    name: str
    description: str
    layers: tuple[LayerSpec, ...]
    builder: Callable[..., list[tuple[str, nn.Module, str]]] = convnet
    # A registry entry that adds same-shape layers so that every region has a tie group; named
    # in the error when a sharing_network value would change nothing for this architecture.
    tie_variant: str | None = None

    def __post_init__(self) -> None:
        names = [lay.name for lay in self.layers]
        assert len(set(names)) == len(names), f"{self.name}: duplicate layer names"
        regions = [lay.region for lay in self.layers]
        assert set(regions) <= set(_sharing.REGIONS), f"{self.name}: unknown region"
        # the early region is a prefix and the deep region the rest of the network
        assert regions == sorted(regions, key=_sharing.REGIONS.index), (
            f"{self.name}: early layers must all come before deep layers"
        )
        assert isinstance(self.layers[-1], Classifier), f"{self.name}: must end in a Classifier"
        for group in _sharing.tie_labels(self).values():
            first = group[0]
            for other in group[1:]:
                assert other.shape == first.shape and other.region == first.region, (
                    f"{self.name}: tied layers {first.name} and {other.name} differ in shape "
                    "or region"
                )

    @property
    def min_input_size(self) -> int:
        """Smallest image side the pooling/striding chain accepts."""
        size = 1
        for lay in self.layers:
            if isinstance(lay, Conv):
                size *= lay.stride * (2 if lay.pool else 1)
        return size


def _vgg11_layers(share: bool = False) -> tuple[LayerSpec, ...]:
    """CIFAR VGG11 (config A: 64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M).

    Regions: early = the 64/128/256-channel convs (conv1-conv4, at 32, 16, 8 px), deep = the
    512-channel convs and the classifier (conv5-conv8, fc, at 4, 2, 1 px). The deep tie group is
    the three 512->512 convs. The early region has no two layers of one shape, so plain vgg11
    refuses sharing_network early/all; `share=True` adds conv4b (256->256, after conv4, before
    the pool), as the student study did, to give the early region the tie pair conv4/conv4b.
    """
    e, d = "early", "deep"
    if share:
        stage3 = (
            Conv("conv4", 256, 256, e, tie="early"),
            Conv("conv4b", 256, 256, e, tie="early", pool=True),  # added: early tie partner
        )
    else:
        stage3 = (Conv("conv4", 256, 256, e, pool=True),)
    return (
        Conv("conv1", 3, 64, e, pool=True),  # 32x32
        Conv("conv2", 64, 128, e, pool=True),  # 16x16
        Conv("conv3", 128, 256, e),  # 8x8
        *stage3,
        Conv("conv5", 256, 512, d),  # 4x4
        Conv("conv6", 512, 512, d, tie="deep", pool=True),
        Conv("conv7", 512, 512, d, tie="deep"),  # 2x2
        Conv("conv8", 512, 512, d, tie="deep", pool=True),
        Classifier("fc", 512),  # 1x1
    )


def _simple_cnn_layers() -> tuple[LayerSpec, ...]:
    e, d = "early", "deep"
    return (
        Conv("conv1", 3, 16, e, stride=2),  # 32x32 -> 16x16
        Conv("conv2", 16, 16, e, tie="early"),
        Conv("conv3", 16, 16, e, tie="early", pool=True),
        Conv("conv4", 16, 32, d),  # 8x8
        Conv("conv5", 32, 32, d, tie="deep"),
        Conv("conv6", 32, 32, d, tie="deep", pool=True),
        Classifier("fc", 32),  # 4x4 -> global average
    )


ARCHITECTURES: dict[str, ArchSpec] = {
    "simple_cnn": ArchSpec(
        "simple_cnn",
        "6 convs (16-16-16 at 1/2 resolution, 32-32-32 at 1/4) and a linear classifier; "
        "2.8M multiply-adds per image and member, made for quick CPU runs",
        _simple_cnn_layers(),
    ),
    "vgg11": ArchSpec(
        "vgg11",
        "CIFAR VGG11 (8 convs 64-128-256-256-512-512-512-512, BatchNorm, max-pooling after "
        "conv1, 2, 4, 6, 8, linear classifier); 153M multiply-adds per 32x32 image and member",
        _vgg11_layers(),
        tie_variant="vgg11_share",
    ),
    "vgg11_share": ArchSpec(
        "vgg11_share",
        "the student study's VGG11 variant: vgg11 plus one extra 256->256 conv (conv4b, after "
        "conv4) so that every region has a tie pair; 191M multiply-adds per 32x32 image and "
        "member",
        _vgg11_layers(share=True),
    ),
}


# ----------------------------------------------------------------------------------------------
# blocks and the model
# ----------------------------------------------------------------------------------------------
class ConvBlock(nn.Module):
    def __init__(self, conv: nn.Module, norm: nn.Module, pool: bool) -> None:
        super().__init__()
        self.conv = conv
        self.norm = norm
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm(self.conv(x)))
        return F.max_pool2d(x, 2) if self.pool else x

    def extra_repr(self) -> str:
        return "maxpool=2" if self.pool else ""


class ClassifierBlock(nn.Module):
    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def convert_layout(x: torch.Tensor, src: str, dst: str, ensemble_size: int) -> torch.Tensor:
    """Move activations between the `plain`, `member` and `channel` layouts (module docstring).

    `plain` -> other layouts copies the one computation to every member (tiling); nothing
    converts back to `plain`, since members may differ after that point.
    """
    m = ensemble_size
    if src == dst:
        return x
    if src == "plain" and dst == "member":
        # (B, C, ...) -> (M, B, C, ...) -> (M * B, C, ...)
        return x.unsqueeze(0).expand(m, *x.shape).reshape(m * x.shape[0], *x.shape[1:])
    if src == "plain" and dst == "channel":
        return x.repeat(1, m, *([1] * (x.dim() - 2)))  # (B, C, ...) -> (B, M * C, ...)
    if src == "channel" and dst == "member":
        b, mc, *rest = x.shape
        # (B, M * C, ...) -> (B, M, C, ...) -> (M, B, C, ...) -> (M * B, C, ...)
        return x.view(b, m, mc // m, *rest).transpose(0, 1).reshape(m * b, mc // m, *rest)
    if src == "member" and dst == "channel":
        n, c, *rest = x.shape
        # (M * B, C, ...) -> (M, B, C, ...) -> (B, M, C, ...) -> (B, M * C, ...)
        return x.view(m, n // m, c, *rest).transpose(0, 1).reshape(n // m, m * c, *rest)
    raise ValueError(f"cannot convert layout {src!r} to {dst!r}")


class EnsembleNet(nn.Module):
    """Blocks from an `ArchSpec`; forward (B, C, H, W) -> logits (M, B, num_classes)."""

    def __init__(
        self,
        spec: ArchSpec,
        blocks: list[tuple[str, nn.Module, str]],
        *,
        ensemble: str,
        ensemble_size: int,
        num_classes: int,
        in_channels: int,
        sharing_network: str,
        sharing_ensemble: str,
        norm: str,
        tie_groups: list[tuple[str, ...]],
    ) -> None:
        super().__init__()
        self.spec = spec
        self.arch = spec.name
        self.ensemble = ensemble
        self.ensemble_size = ensemble_size
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.sharing_network = sharing_network
        self.sharing_ensemble = sharing_ensemble
        self.norm = norm
        self.tie_groups = tie_groups
        self.blocks = nn.ModuleDict({name: block for name, block, _ in blocks})
        self.layouts = {name: layout for name, _, layout in blocks}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ConfigError(
                f"{self.arch}: expected images (B, {self.in_channels}, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        size = self.spec.min_input_size
        if min(x.shape[2:]) < size:
            raise ConfigError(
                f"{self.arch}: image size {tuple(x.shape[2:])} is too small; need H, W >= {size}"
            )
        m, b = self.ensemble_size, x.shape[0]
        layout = "plain"
        for name, block in self.blocks.items():
            x = block(convert_layout(x, layout, self.layouts[name], m))
            layout = self.layouts[name]
        x = convert_layout(x, layout, "member", m)  # (M * B, K)
        return x.view(m, b, self.num_classes)

    def extra_repr(self) -> str:
        return (
            f"arch={self.arch}, ensemble={self.ensemble}, ensemble_size={self.ensemble_size}, "
            f"num_classes={self.num_classes}, sharing_network={self.sharing_network}, "
            f"sharing_ensemble={self.sharing_ensemble}, norm={self.norm}, "
            f"layouts={list(self.layouts.values())}"
        )


# ----------------------------------------------------------------------------------------------
# build_model
# ----------------------------------------------------------------------------------------------
def _ordinary(layout: str) -> LayerTypes:
    def conv(i, o, k, s, p, bias):
        return nn.Conv2d(i, o, k, stride=s, padding=p, bias=bias)

    return LayerTypes(conv=conv, norm=nn.BatchNorm2d, linear=nn.Linear, layout=layout)


def _batch_ensemble(m: int, alpha: float | None, gamma: float | None, norm: str) -> LayerTypes:
    def conv(i, o, k, s, p, bias):
        return BEConv2d(i, o, k, m, stride=s, padding=p, alpha=alpha, gamma=gamma, bias=bias)

    def linear(i, o):
        return BELinear(i, o, m, alpha=alpha, gamma=gamma)

    nrm = (
        partial(BEBatchNorm2d, ensemble_size=m)
        if norm == "batch"
        else partial(MemberBatchNorm2d, ensemble_size=m)
    )
    return LayerTypes(conv=conv, norm=nrm, linear=linear, layout="member")


def _deep_ensemble(m: int) -> LayerTypes:
    def conv(i, o, k, s, p, bias):
        return DeepConv2d(i, o, k, m, stride=s, padding=p, bias=bias)

    def linear(i, o):
        return DeepLinear(i, o, m)

    # A deep trunk runs channel-stacked; its classifier takes member-major rows.
    return LayerTypes(
        conv=conv,
        norm=partial(MemberBatchNorm2d, ensemble_size=m, channel_stacked=True),
        linear=linear,
        layout="channel",
    )


def validate_model_args(
    arch: str,
    num_classes: int,
    ensemble_size: int = 4,
    ensemble: str = "batch",
    alpha: float | None = 0.5,
    gamma: float | None = 0.5,
    sharing_network: str = "none",
    sharing_ensemble: str = "none",
    norm: str = "batch",
    in_channels: int = 3,
) -> None:
    """Every check `build_model` makes, without building; raises `ConfigError`."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"arch={arch!r} is not allowed; choose one of {list(ARCHITECTURES)}")
    if ensemble not in ENSEMBLES:
        raise ConfigError(f"ensemble={ensemble!r} is not allowed; choose one of {list(ENSEMBLES)}")
    if norm not in NORMS:
        raise ConfigError(f"norm={norm!r} is not allowed; choose one of {list(NORMS)}")
    for name, v in (
        ("num_classes", num_classes),
        ("ensemble_size", ensemble_size),
        ("in_channels", in_channels),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name}={v!r}: must be an integer >= 1")
    if ensemble == "single" and ensemble_size != 1:
        raise ConfigError(
            f"ensemble_size={ensemble_size}: ensemble 'single' is one network, so ensemble_size "
            "must be 1 (use ensemble 'batch' or 'deep' for more members)"
        )
    if ensemble != "single" and ensemble_size < 2:
        raise ConfigError(
            f"ensemble_size={ensemble_size}: ensemble {ensemble!r} needs at least 2 members "
            "(use ensemble 'single' for one network)"
        )
    check_fast_weight_init(alpha, "alpha")
    check_fast_weight_init(gamma, "gamma")
    if norm == "member" and ensemble != "batch":
        raise ConfigError(
            f"norm='member' with ensemble {ensemble!r}: per-member statistics are an option of "
            "the 'batch' ensemble only ('single' has one member, 'deep' members always have "
            "their own BatchNorm); use norm='batch' or 'none'"
        )
    _sharing.validate_sharing(arch, ensemble, sharing_network, sharing_ensemble)


def build_model(
    arch: str,
    num_classes: int,
    ensemble_size: int = 4,
    ensemble: str = "batch",
    alpha: float | None = 0.5,
    gamma: float | None = 0.5,
    sharing_network: str = "none",
    sharing_ensemble: str = "none",
    norm: str = "batch",
    in_channels: int = 3,
) -> EnsembleNet:
    """Build `arch` as a `single` network, a `batch` ensemble or a `deep` ensemble.

    * single: ordinary layers; ensemble_size must be 1; output (1, B, K).
    * batch:  BatchEnsemble layers (`BEConv2d`, `BELinear`) everywhere, fast weights initialised
              from `alpha` / `gamma` (see `core.layers.init_fast_weight`); norm `batch` =
              shared statistics with per-member affine, `member` = fully per-member, `none`.
    * deep:   ensemble_size independent members stacked in every parameter (member m owns
              `param[m]`, or channel block m of norm statistics), run as grouped convolutions.

    `sharing_network` ties same-shape slow weights inside a region; `sharing_ensemble` makes a
    region one ordinary layer for all members (computed untiled when it starts at the input).
    See `core.sharing`. Every bad argument raises `ConfigError`.
    """
    validate_model_args(
        arch,
        num_classes,
        ensemble_size,
        ensemble,
        alpha,
        gamma,
        sharing_network,
        sharing_ensemble,
        norm,
        in_channels,
    )
    spec = ARCHITECTURES[arch]
    shared = (
        _sharing.shared_layer_names(spec, sharing_ensemble)
        if ensemble != "single"
        else {lay.name for lay in spec.layers}
    )
    if ensemble == "batch":
        member_types = _batch_ensemble(ensemble_size, alpha, gamma, norm)
    elif ensemble == "deep":
        member_types = _deep_ensemble(ensemble_size)
    else:
        member_types = _ordinary("plain")
    first_conv = spec.layers[0]
    if isinstance(first_conv, Conv) and first_conv.in_channels != in_channels:
        spec = dataclasses.replace(
            spec,
            layers=(dataclasses.replace(first_conv, in_channels=in_channels), *spec.layers[1:]),
        )
    # Layer types per layer, in table order: a shared layer runs untiled (`plain`) until the
    # first per-member layer, and tiled (`member`) after it.
    types: dict[str, LayerTypes] = {}
    tiled = False
    for layer in spec.layers:
        if layer.name in shared:
            types[layer.name] = _ordinary("member" if tiled else "plain")
        else:
            tiled = True
            if ensemble == "deep" and isinstance(layer, Classifier):
                types[layer.name] = dataclasses.replace(member_types, layout="member")
            else:
                types[layer.name] = member_types
    blocks = spec.builder(spec, num_classes, lambda layer: types[layer.name], norm)
    groups = _sharing.tie_groups(spec, sharing_network)
    model = EnsembleNet(
        spec,
        blocks,
        ensemble=ensemble,
        ensemble_size=ensemble_size,
        num_classes=num_classes,
        in_channels=in_channels,
        sharing_network=sharing_network,
        sharing_ensemble=sharing_ensemble,
        norm=norm,
        tie_groups=groups,
    )
    _sharing.tie_slow_weights(model, groups)
    return model


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
