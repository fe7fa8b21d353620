"""`build_model`: an architecture of `core.architectures` as one network, a BatchEnsemble, or a
deep ensemble.

`model(x)` takes images (B, C, H, W) and returns logits (M, B, num_classes): every member sees
every example. Internally each block runs in one of three layouts (see `core.layers`):

* `plain`   (B, ...)       one computation for all members: a `single` network, and layers of
                           a `sharing_ensemble` region at the input (computed once, untiled);
* `member`  (M * B, ...)   member-major: BatchEnsemble layers, shared layers after the tiling,
                           and the `deep` ensemble's classifier;
* `channel` (B, M * C, ...) channel-stacked: a `deep` ensemble's conv trunk (grouped convs);
* `members` [M x (B, ...)]  a list of M tensors, one per member: the same trunk computed as a
                           loop over members (`deep_impl='loop'`).

The model converts between layouts only where consecutive blocks differ (tiling happens once,
after the last `plain` block).

A deep ensemble's trunk has one parameter layout (stacked, `param[m]` is member m's) and two
computations over it, the same function to float rounding: `grouped` (one grouped convolution
per layer, channel-stacked) and `loop` (M ordinary convolutions per layer on a member list).
`deep_impl` chooses; `auto` picks by device type and architecture from measurements
(`DEEP_IMPL_AUTO`, `benchmarks/deep_ensemble.py`). It can be changed on a built model
(`model.deep_impl = ...`): parameters, buffers and state_dict are the same either way.

Initialisation: every layer initialises itself in its constructor (PyTorch defaults for slow
weights, `core.layers.init_fast_weight` for fast weights). There is deliberately no model-level
init loop, so the requested alpha/gamma init is never overwritten.

The rules of which arguments go together are `core.config.check_model`'s; `build_model` runs
them, `model_for_config` trusts a validated TrialConfig.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from core.architectures import (
    ARCHITECTURES,
    ArchSpec,
    Classifier,
    Conv,
    LayerSpec,
    shared_layer_names,
    tie_groups,
)
from core.config import check_model, integer
from core.errors import ConfigError, refusal
from core.layers import (
    BEBatchNorm2d,
    BEConv2d,
    BELinear,
    DeepConv2d,
    DeepLinear,
    MemberBatchNorm2d,
    be_conv_norm_relu,
)

if TYPE_CHECKING:
    from core.config import TrialConfig

__all__ = [
    "DEEP_IMPLS",
    "DEEP_IMPL_AUTO",
    "EnsembleNet",
    "LayerTypes",
    "build_model",
    "convert_layout",
    "count_parameters",
    "model_for_config",
    "resolve_deep_impl",
    "tie_slow_weights",
]


COUNT = integer(lo=1)  # the check of num_classes and in_channels

DEEP_IMPLS = ("auto", "grouped", "loop")  # values of deep_impl
# deep_impl='auto': (device type, arch) -> the faster computation of a deep trunk, from
# benchmarks/deep_ensemble.py (numbers in benchmarks/README.md, "Deep ensembles"). A device or
# architecture not listed gets the device's `None` entry, else `grouped`.
#
# cpu -> grouped. benchmarks/deep_ensemble.py, 2026-12-01, 2 vCPU AMD EPYC, 2 torch threads,
# Adam, B = 32 per member (load average 7-15: other jobs shared the cores), step time over M
# separate single networks, median of per-round ratios:
#   simple_cnn M=4: grouped 0.41, loop 0.93    simple_cnn M=8: grouped 0.42, loop 0.84
#   vgg11      M=4: grouped 0.81, loop 1.00    vgg11      M=8: grouped 0.54, loop 0.90
#   simple_cnn M=4, B = 128: grouped 0.44, loop 0.77
# cuda and other devices: not measured yet (no GPU in that session), so `grouped`, the
# computation deep ensembles had before `loop` existed; run the benchmark with --device cuda.
# A third computation, torch.func.vmap over the stacked parameters, is not offered: functorch's
# convolution batch rule turns a conv with batched input and weight into one grouped
# convolution (groups * M), i.e. `grouped` again.
DEEP_IMPL_AUTO: dict[tuple[str, str | None], str] = {
    ("cpu", None): "grouped",
}


def resolve_deep_impl(impl: str, device_type: str, arch: str) -> str:
    """`grouped` or `loop`: `impl` itself, or for `auto` the measured choice (DEEP_IMPL_AUTO)."""
    if impl != "auto":
        return impl
    return DEEP_IMPL_AUTO.get(
        (device_type, arch), DEEP_IMPL_AUTO.get((device_type, None), "grouped")
    )


def _check_deep_impl(value: str) -> str:
    if value not in DEEP_IMPLS:
        raise ConfigError(refusal("deep_impl", value, DEEP_IMPLS))
    return value


# ----------------------------------------------------------------------------------------------
# layer types and the builder
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# blocks and the model
# ----------------------------------------------------------------------------------------------
class ConvBlock(nn.Module):
    def __init__(self, conv: nn.Module, norm: nn.Module, pool: bool) -> None:
        super().__init__()
        self.conv = conv
        self.norm = norm
        self.pool = pool
        # A BatchEnsemble conv and shared-statistics norm run as one fused computation
        # (core.layers.be_conv_norm_relu); same parameters and state_dict as unfused.
        self.fused = type(conv) is BEConv2d and type(norm) is BEBatchNorm2d and conv.bias is None

    def forward(
        self,
        x: torch.Tensor | list[torch.Tensor],
        plain: bool = False,
        alpha_next: torch.Tensor | None = None,
        alpha_given: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        # plain: x (B, ...) is seen by every member; alpha_next / alpha_given: the next block's
        # alpha applied by this one / this one's applied by the previous (be_conv_norm_relu)
        if plain or alpha_next is not None or alpha_given:
            x = be_conv_norm_relu(self.conv, self.norm, x, plain, alpha_next, alpha_given)
            return F.max_pool2d(x, 2) if self.pool else x
        if isinstance(x, list):  # a member list (deep_impl='loop')
            return [
                F.max_pool2d(y, 2) if self.pool else y for y in map(F.relu, self.norm(self.conv(x)))
            ]
        if self.fused:
            x = be_conv_norm_relu(self.conv, self.norm, x)
        else:
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


def convert_layout(
    x: torch.Tensor | list[torch.Tensor], src: str, dst: str, ensemble_size: int
) -> torch.Tensor | list[torch.Tensor]:
    """Move activations between the `plain`, `member`, `channel` and `members` layouts (module
    docstring).

    `plain` -> other layouts copies the one computation to every member (tiling; to `members`
    the one tensor is listed M times, no copy); nothing converts back to `plain`, since members
    may differ after that point.
    """
    m = ensemble_size
    if src == dst:
        return x
    if dst == "members":
        if src == "plain":
            return [x] * m
        return list(x.chunk(m, dim=0 if src == "member" else 1))
    if src == "members":
        if dst in ("member", "channel"):
            return torch.cat(x, dim=0 if dst == "member" else 1)
        raise ValueError(f"cannot convert layout {src!r} to {dst!r}")
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
        deep_impl: str = "auto",
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
        self.deep_impl = deep_impl

    @property
    def deep_impl(self) -> str:
        """How a deep trunk (`channel` blocks) is computed: `grouped`, `loop` or `auto`."""
        return self._deep_impl

    @deep_impl.setter
    def deep_impl(self, value: str) -> None:
        self._deep_impl = _check_deep_impl(value)

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
        loop = resolve_deep_impl(self._deep_impl, x.device.type, self.arch) == "loop"
        layout = "plain"
        carries = self._alpha_carriers(x.device)
        given = False
        for name, block in self.blocks.items():
            dst = self.layouts[name]
            if loop and dst == "channel":
                dst = "members"
            nxt = carries.get(name)
            # a fused block takes one input for all members (untiled): forward(x, plain=True)
            fused = isinstance(block, ConvBlock) and block.fused
            plain = layout == "plain" and dst == "member" and fused
            if not plain:  # plain: the block tiles inside its convolution, at no extra cost
                x = convert_layout(x, layout, dst, m)
            x = block(x, plain, nxt, given) if isinstance(block, ConvBlock) else block(x)
            given = nxt is not None
            layout = dst

        x = convert_layout(x, layout, "member", m)  # (M * B, K)
        return x.view(m, b, self.num_classes)

    def _alpha_carriers(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Block name -> the next block's alpha that it applies in its own output pass
        (be_conv_norm_relu's alpha_next): both fused, member-major, no pooling between, and no
        alpha entry exactly 0 (where relu(t) * a would lose the ReLU's mask). On CPU in eager
        mode only: the zero check reads the values (a device sync on CUDA, a graph break under
        torch.compile, whose fusion makes the multiply free there anyway)."""
        if device.type != "cpu" or torch.compiler.is_compiling() or self.ensemble != "batch":
            return {}
        out = {}
        names = list(self.blocks)
        for a, b in zip(names, names[1:], strict=False):
            first, second = self.blocks[a], self.blocks[b]
            if not (isinstance(first, ConvBlock) and isinstance(second, ConvBlock)):
                continue
            if first.pool or not (first.fused and second.fused):
                continue
            if self.layouts[a] != "member" or self.layouts[b] != "member":
                continue
            if second.conv.alpha_init is not None:
                out[a] = second.conv.alpha
        # one check for all (a zero entry is all but impossible after a random init), then
        # the pairs one by one
        if out and bool(torch.cat([a.view(-1) for a in out.values()]).eq(0).any()):
            out = {k: a for k, a in out.items() if not bool(a.eq(0).any())}
        return out

    def extra_repr(self) -> str:
        return (
            f"arch={self.arch}, ensemble={self.ensemble}, ensemble_size={self.ensemble_size}, "
            f"num_classes={self.num_classes}, sharing_network={self.sharing_network}, "
            f"sharing_ensemble={self.sharing_ensemble}, norm={self.norm}, "
            f"layouts={list(self.layouts.values())}"
            + (f", deep_impl={self.deep_impl}" if self.ensemble == "deep" else "")
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
    deep_impl: str = "auto",
) -> EnsembleNet:
    """Build `arch` as a `single` network, a `batch` ensemble or a `deep` ensemble.

    * single: ordinary layers; ensemble_size must be 1; output (1, B, K).
    * batch:  BatchEnsemble layers (`BEConv2d`, `BELinear`) everywhere, fast weights initialised
              from `alpha` / `gamma` (see `core.layers.init_fast_weight`); norm `batch` =
              shared statistics with per-member affine, `member` = fully per-member, `none`.
    * deep:   ensemble_size independent members stacked in every parameter (member m owns
              `param[m]`, or channel block m of norm statistics), its trunk computed as grouped
              convolutions or as a loop over members (`deep_impl`: `grouped`, `loop`, or
              `auto`, the faster one measured for the input's device; see the module docstring).

    `sharing_network` ties same-shape slow weights inside a region; `sharing_ensemble` makes a
    region one ordinary layer for all members (computed untiled when it starts at the input).
    See `core.architectures`. Every bad argument raises `ConfigError` (`core.config.check_model`).
    """
    check_model(
        arch, ensemble, ensemble_size, alpha, gamma, sharing_network, sharing_ensemble, norm
    )
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        COUNT(name, value)
    _check_deep_impl(deep_impl)
    return _build(
        ARCHITECTURES[arch],
        num_classes,
        ensemble_size,
        ensemble,
        alpha,
        gamma,
        sharing_network,
        sharing_ensemble,
        norm,
        in_channels,
        deep_impl,
    )


def model_for_config(cfg: TrialConfig, num_classes: int, in_channels: int) -> EnsembleNet:
    """The model of a validated TrialConfig (its rules are not checked again)."""
    return _build(
        ARCHITECTURES[cfg.arch],
        num_classes,
        cfg.ensemble_size,
        cfg.ensemble,
        cfg.alpha,
        cfg.gamma,
        cfg.sharing_network,
        cfg.sharing_ensemble,
        cfg.norm,
        in_channels,
    )


def _build(
    spec: ArchSpec,
    num_classes: int,
    ensemble_size: int,
    ensemble: str,
    alpha: float | None,
    gamma: float | None,
    sharing_network: str,
    sharing_ensemble: str,
    norm: str,
    in_channels: int,
    deep_impl: str = "auto",
) -> EnsembleNet:
    shared = (
        shared_layer_names(spec, sharing_ensemble)
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
    blocks = convnet(spec, num_classes, lambda layer: types[layer.name], norm)
    groups = tie_groups(spec, sharing_network)
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
        deep_impl=deep_impl,
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
