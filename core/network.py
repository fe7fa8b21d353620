"""The network that runs: `EnsembleNet` and its blocks (`core.models` builds them).

`model(x)` takes images (B, C, H, W) and returns logits (M, B, num_classes): every member sees
every example (a `mimo` network also takes (M, B, C, H, W), member m's inputs x[m]).
Internally each block runs in one of four layouts (see `core.layers`):

* `shared`  (B, ...)       one computation for all members: a `single` network, and layers of
                           a `sharing_ensemble` region at the input (computed once, untiled);
* `member`  (M * B, ...)   member-major: BatchEnsemble layers, shared layers after the tiling,
                           and the `deep` ensemble's classifier;
* `channel` (B, M * C, ...) channel-stacked: a `deep` ensemble's conv trunk (grouped convs),
                           and all of a `packed` ensemble after its first layer; a `mimo`
                           network's M heads (its body is `shared`: one network);
* `members` [M x (B, ...)]  a list of M tensors, one per member: the same trunk computed as a
                           loop over members (`deep_impl='loop'`).

The model converts between layouts only where consecutive blocks differ (tiling happens once,
after the last `shared` block; a fused BatchEnsemble block takes the shared input untiled and
tiles inside its convolution).

A deep ensemble's trunk has one parameter layout (stacked, `param[m]` is member m's) and two
computations over it, the same function to float rounding: `grouped` (one grouped convolution
per layer, channel-stacked) and `loop` (M ordinary convolutions per layer on a member list).
`deep_impl` chooses; `auto` picks by device type, architecture and the precision the forward
pass computes in (bf16 under autocast, else fp32), from measurements
(`DEEP_IMPL_AUTO`, `benchmarks/deep_ensemble.py`). It can be changed on a built model
(`model.deep_impl = ...`): parameters, buffers and state_dict are the same either way.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from core.architectures import ArchSpec
from core.errors import ConfigError
from core.layers import BEConvNormReLU
from core.spec import MODEL_FIELDS, ModelSpec

__all__ = [
    "DEEP_IMPL_AUTO",
    "ClassifierBlock",
    "ConvBlock",
    "EnsembleNet",
    "FusedConvBlock",
    "convert_layout",
    "forward_precision",
    "resolve_deep_impl",
]

# deep_impl='auto': (device type, arch, precision) -> the faster computation of a deep trunk,
# from benchmarks/deep_ensemble.py (the measurements: benchmarks/README.md, "Deep ensembles").
# None in the arch or precision place matches any; the most specific entry wins, and a device
# with no entry gets `grouped`.
DEEP_IMPL_AUTO: dict[tuple[str, str | None, str | None], str] = {
    ("cpu", None, None): "grouped",
    # vgg11's wide grouped convolutions in fp32 took 1.25-1.44x the time of M separate
    # networks on 2 threads, its loop 0.97-1.01x; in bf16 grouped 0.94-1.14x, the loop
    # 1.02-1.07x (2026-12-03, M = 4 and 8)
    ("cpu", "vgg11", "fp32"): "loop",
    ("cpu", "vgg11_share", "fp32"): "loop",
}


def forward_precision(x: torch.Tensor) -> str:
    """The precision a forward pass on `x` computes in: 'bf16' under bf16 autocast on x's
    device (how a trial runs bf16, core.runtime) or for bf16 inputs, else 'fp32'."""
    kind = x.device.type
    bf16 = torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.bfloat16
    return "bf16" if bf16 or x.dtype == torch.bfloat16 else "fp32"


def resolve_deep_impl(impl: str, device_type: str, arch: str, precision: str = "fp32") -> str:
    """`grouped` or `loop`: `impl` itself, or for `auto` the measured choice (DEEP_IMPL_AUTO)."""
    if impl != "auto":
        return impl
    for key in (
        (device_type, arch, precision),
        (device_type, arch, None),
        (device_type, None, precision),
        (device_type, None, None),
    ):
        if key in DEEP_IMPL_AUTO:
            return DEEP_IMPL_AUTO[key]
    return "grouped"


# ----------------------------------------------------------------------------------------------
# blocks
# ----------------------------------------------------------------------------------------------
def _pool(x: torch.Tensor, pool: bool) -> torch.Tensor:
    return F.max_pool2d(x, 2) if pool else x


class ConvBlock(nn.Module):
    """relu(norm(conv(x))), then a 2x2 max-pool when `pool`; a member list member by member."""

    def __init__(self, conv: nn.Module, norm: nn.Module, pool: bool) -> None:
        super().__init__()
        self.conv = conv
        self.norm = norm
        self.pool = pool

    @property
    def shared_input(self) -> bool:
        """Whether the conv takes the untiled `shared` layout (Packed-Ensembles' first layer)."""
        return getattr(self.conv, "shared_input", False)

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(x, list):  # a member list (deep_impl='loop')
            return [_pool(y, self.pool) for y in map(F.relu, self.norm(self.conv(x)))]
        return _pool(F.relu(self.norm(self.conv(x))), self.pool)

    def extra_repr(self) -> str:
        return "maxpool=2" if self.pool else ""


class FusedConvBlock(BEConvNormReLU):
    """A BatchEnsemble `ConvBlock` computed fused (`core.layers.fused`): same function, same
    parameters and state_dict keys."""

    def __init__(self, conv: nn.Module, norm: nn.Module, pool: bool, shared_input: bool) -> None:
        super().__init__(conv, norm, shared_input)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _pool(super().forward(x), self.pool)

    def extra_repr(self) -> str:
        return ", ".join(filter(None, (super().extra_repr(), "maxpool=2" if self.pool else "")))


class ClassifierBlock(nn.Module):
    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear

    @property
    def shared_input(self) -> bool:
        """Whether the classifier reads the untiled `shared` layout (MIMO's M heads)."""
        return getattr(self.linear, "shared_input", False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def convert_layout(
    x: torch.Tensor | list[torch.Tensor], src: str, dst: str, ensemble_size: int
) -> torch.Tensor | list[torch.Tensor]:
    """Move activations between the `shared`, `member`, `channel` and `members` layouts (module
    docstring).

    `shared` -> other layouts copies the one computation to every member (tiling; to `members`
    the one tensor is listed M times, no copy); nothing converts back to `shared`, since members
    may differ after that point.
    """
    m = ensemble_size
    if src == dst:
        return x
    if dst == "members":
        if src == "shared":
            return [x] * m
        return list(x.chunk(m, dim=0 if src == "member" else 1))
    if src == "members":
        if dst in ("member", "channel"):
            return torch.cat(x, dim=0 if dst == "member" else 1)
        raise ValueError(f"cannot convert layout {src!r} to {dst!r}")
    if src == "shared" and dst == "member":
        # (B, C, ...) -> (M, B, C, ...) -> (M * B, C, ...)
        return x.unsqueeze(0).expand(m, *x.shape).reshape(m * x.shape[0], *x.shape[1:])
    if src == "shared" and dst == "channel":
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


# ----------------------------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------------------------
class EnsembleNet(nn.Module):
    """Blocks from an `ArchSpec`; forward (B, C, H, W) -> logits (M, B, num_classes).

    `blocks`: (name, block, layout) in order, `layout` the one the block computes in; a block
    with `shared_input` takes its input in the `shared` layout.
    """

    def __init__(
        self,
        spec: ModelSpec,
        arch_spec: ArchSpec,
        blocks: list[tuple[str, nn.Module, str]],
        *,
        num_classes: int,
        in_channels: int,
        tie_groups: list[tuple[str, ...]],
    ) -> None:
        super().__init__()
        self.spec = spec
        self.arch_spec = arch_spec
        self.arch = spec.arch
        self.ensemble = spec.ensemble
        self.ensemble_size = spec.ensemble_size
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.tie_groups = tie_groups
        self.blocks = nn.ModuleDict({name: block for name, block, _ in blocks})
        self.layouts = {name: layout for name, _, layout in blocks}
        self.input_layouts = {
            name: "shared" if getattr(block, "shared_input", False) else layout
            for name, block, layout in blocks
        }

    @property
    def deep_impl(self) -> str:
        """How a deep trunk (`channel` blocks) is computed: `grouped`, `loop` or `auto`."""
        return self.spec.deep_impl

    @deep_impl.setter
    def deep_impl(self, value: str) -> None:
        MODEL_FIELDS["deep_impl"].metadata["check"]("deep_impl", value)
        self.spec = dataclasses.replace(self.spec, deep_impl=value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_images(x)
        m, b = self.ensemble_size, x.shape[-4]  # mimo: (M, B, C, H, W), one input per member
        loop = (
            self.ensemble == "deep"  # a packed trunk is channel-stacked too, but never a loop
            and resolve_deep_impl(self.deep_impl, x.device.type, self.arch, forward_precision(x))
            == "loop"
        )
        layout = "shared"
        for name, block in self.blocks.items():
            layout_in, layout_out = self.input_layouts[name], self.layouts[name]
            if loop and layout_out == "channel":
                layout_in = layout_out = "members"
            x = block(convert_layout(x, layout, layout_in, m))
            layout = layout_out
        x = convert_layout(x, layout, "member", m)  # (M * B, K)
        return x.view(m, b, self.num_classes)

    def _check_images(self, x: torch.Tensor) -> None:
        per_member = self.ensemble == "mimo" and x.dim() == 5 and x.shape[0] == self.ensemble_size
        if not (x.dim() == 4 or per_member) or x.shape[-3] != self.in_channels:
            also = f" or ({self.ensemble_size}, B, {self.in_channels}, H, W)" * (
                self.ensemble == "mimo"
            )
            raise ConfigError(
                f"{self.arch}: expected images (B, {self.in_channels}, H, W){also}, "
                f"got shape {tuple(x.shape)}"
            )
        size = self.arch_spec.min_input_size
        if min(x.shape[-2:]) < size:
            raise ConfigError(
                f"{self.arch}: image size {tuple(x.shape[-2:])} is too small; need H, W >= {size}"
            )

    def extra_repr(self) -> str:
        spec = self.spec
        return (
            f"arch={self.arch}, ensemble={self.ensemble}, ensemble_size={self.ensemble_size}, "
            f"num_classes={self.num_classes}, sharing_network={spec.sharing_network}, "
            f"sharing_ensemble={spec.sharing_ensemble}, norm={spec.norm}, "
            f"layouts={list(self.layouts.values())}"
            + (f", deep_impl={self.deep_impl}" if self.ensemble == "deep" else "")
        )
