"""Packed-Ensembles (Laurent et al., ICLR 2023): M independent narrow networks computed as one,
each layer one grouped convolution on the channel-stacked layout (B, C', H, W).

Notation: M members, width factor alpha (`packed_width`), gamma subgroups per member
(`packed_groups`), G = M * gamma groups. A layer of the base network C_in -> C_out becomes

    C'_in = packed_channels(C_in),  C'_out = packed_channels(C_out),
    packed_channels(C) = G * ceil(alpha * C / G)   (alpha * C rounded up to a multiple of G)

    y = conv2d(x, W, b, groups=G),   W: (C'_out, C'_in / G, k, k),  b: (C'_out,)

Channel block m (channels m * C'/M ... (m + 1) * C'/M - 1) is member m, as in the `channel`
layout of `core.layers.deep`: a packed member is a deep-ensemble member of width
alpha * C / M whose every layer is further split into gamma independent subgroups. Group g
computes y_g = conv2d(x_g, W_g, b_g) on its own input and output slices, nothing is shared
between groups, so members are independent networks.

    params(conv)       = C'_in * C'_out * k^2 / G + C'_out   (bias)
                       ~ alpha^2 / (M * gamma) * C_in * C_out * k^2
    forward FLOPs/img  = 2 * params_weight(conv) * H_out * W_out   (multiply-add = 2 FLOPs)

So the trunk costs alpha^2 / (M * gamma) of one base network per image (the paper's
alpha = 2, M = 4, gamma = 1: about one base network for four members).

The first layer (`first=True`) takes the images ungrouped (groups = 1, C_in = image channels,
not widened): C_in -> C'_out, params C_in * C'_out * k^2 + C'_out. Output block m is the same
function as a member-m convolution of the image, so the members stay independent; computing it
ungrouped needs no copy of the image per member (torch-uncertainty's `first=True`).

`PackedLinear` is the classifier: member m's features (block m of C'_in) -> member m's K logits,
groups = M, output (B, M * K) channel-stacked; params C'_in * K + M * K.

Where this differs from torch-uncertainty's `layers/packed.py` (read, not copied), by choice:
* the classifier is grouped by M, not M * gamma: each member's logits see all of its features
  (with M * gamma groups a member's K logits would split into gamma blocks, each seeing a
  1/gamma slice, and M * K need not be divisible by M * gamma);
* the rounding goes up to a multiple of G (torch-uncertainty adds M - (C % G), which is a
  multiple of G only when gamma = 1);
* gamma is built as asked: torch-uncertainty lowers gamma until every group has at least 64
  input channels (`minimum_channels_per_group`); here the formula above holds exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from core.checks import number
from core.errors import ConfigError
from core.layers.shapes import check_int, set_conv_geometry

__all__ = ["PackedConv2d", "PackedLinear", "packed_channels"]

WIDTH = number(lo=1.0)  # the check of a width factor alpha


def packed_channels(channels: int, width: float, groups: int) -> int:
    """alpha * C rounded up to a multiple of `groups` (G = M * gamma)."""
    return groups * math.ceil(width * channels / groups - 1e-9)


class PackedConv2d(nn.Module):
    """A Packed-Ensembles conv: conv2d(x, W, b, groups=M * gamma) on (B, C'_in, H, W), or with
    `first` conv2d(images, W, b) on (B, C_in, H, W); output (B, C'_out, H', W'), channel
    block m member m's (module docstring for C' and the parameter count)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        ensemble_size: int,
        width: float = 2.0,
        subgroups: int = 1,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        first: bool = False,
    ) -> None:
        super().__init__()
        set_conv_geometry(
            self, in_channels, out_channels, kernel_size, stride, padding, ensemble_size
        )
        WIDTH("packed_width", width)
        self.width, self.subgroups, self.first = width, check_int("packed_groups", subgroups), first
        g = ensemble_size * subgroups
        self.groups = 1 if first else g
        self.actual_in = in_channels if first else packed_channels(in_channels, width, g)
        self.actual_out = packed_channels(out_channels, width, g)
        self.conv = nn.Conv2d(
            self.actual_in,
            self.actual_out,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            groups=self.groups,
            bias=bias,
        )

    @property
    def shared_input(self) -> bool:
        """The first layer takes the images untiled (`shared` layout, `core.network`)."""
        return self.first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.actual_in:
            raise ConfigError(
                f"PackedConv2d: expected input (B, {self.actual_in}, H, W) "
                f"({'images' if self.first else 'channel-stacked'}), got shape {tuple(x.shape)}"
            )
        return self.conv(x)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}->{self.out_channels} as {self.actual_in}->{self.actual_out}, "
            f"groups={self.groups}, ensemble_size={self.ensemble_size}, width={self.width}, "
            f"subgroups={self.subgroups}, first={self.first}"
        )


class PackedLinear(nn.Module):
    """The packed classifier: y[:, m K:(m+1) K] = x[:, block m] @ W_m^T + b_m, as one grouped
    1x1 convolution (groups = M) on (B, C'_in) -> (B, M * K) channel-stacked."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        ensemble_size: int,
        width: float = 2.0,
        subgroups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features)
        self.out_features = check_int("out_features", out_features)
        self.ensemble_size = m = check_int("ensemble_size", ensemble_size)
        WIDTH("packed_width", width)
        self.width, self.subgroups = width, check_int("packed_groups", subgroups)
        self.actual_in = packed_channels(in_features, width, m * subgroups)
        self.conv = nn.Conv1d(self.actual_in, m * out_features, 1, groups=m, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.actual_in:
            raise ConfigError(
                f"PackedLinear: expected input (B, {self.actual_in}), got shape {tuple(x.shape)}"
            )
        return self.conv(x.unsqueeze(-1)).squeeze(-1)  # (B, C'_in, 1) -> (B, M * K)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}->{self.out_features} as {self.actual_in}->"
            f"{self.ensemble_size * self.out_features}, groups={self.ensemble_size}"
        )
