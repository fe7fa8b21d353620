"""Argument and shape checks shared by the ensemble layers (refusals worded as core.checks')."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from core.checks import COUNT, integer
from core.errors import ConfigError


def check_int(name: str, value: int, lo: int = 1) -> int:
    (COUNT if lo == 1 else integer(lo=lo))(name, value)
    return value


def split_members(x: torch.Tensor, ensemble_size: int, layer: str) -> int:
    """Return B for a member-major input (M * B, ...); refuse a first dim not divisible by M."""
    n = x.shape[0]
    if n % ensemble_size != 0:
        raise ConfigError(
            f"{layer}: input first dimension {n} is not divisible by ensemble_size="
            f"{ensemble_size}; expected member-major input of shape (ensemble_size * B, ...) "
            "with member 0's B rows first"
        )
    return n // ensemble_size


def set_conv_geometry(
    layer: nn.Module,
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int],
    padding: int | tuple[int, int],
    ensemble_size: int,
) -> None:
    """Check and store a conv layer's sizes (shared by BEConv2d and DeepConv2d)."""
    layer.in_channels = check_int("in_channels", in_channels)
    layer.out_channels = check_int("out_channels", out_channels)
    layer.kernel_size = _pair(kernel_size)
    layer.stride = _pair(stride)
    layer.padding = _pair(padding)
    for k in layer.kernel_size:
        check_int("kernel_size", k)
    for s in layer.stride:
        check_int("stride", s)
    for p in layer.padding:
        check_int("padding", p, lo=0)
    layer.ensemble_size = check_int("ensemble_size", ensemble_size)


def check_member_list(xs: Sequence[torch.Tensor], m: int, channels: int, layer: str) -> None:
    """Refuse a member list that is not M tensors (B, channels, H, W)."""
    if len(xs) != m or any(x.dim() != 4 or x.shape[1] != channels for x in xs):
        shapes = [tuple(x.shape) for x in xs]
        raise ConfigError(
            f"{layer}: expected a member list of ensemble_size={m} tensors (B, {channels}, H, W), "
            f"got shapes {shapes}"
        )


def like_activation(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Parameter `p` in the dtype of the activation `x` it multiplies, where x is half
    precision (bf16 under autocast); `p` itself otherwise.

    Autocast casts the inputs of convolutions and matmuls only: an elementwise multiply of a
    bf16 activation by an fp32 fast weight or affine parameter would promote the whole
    activation to fp32, and every layer after it would read and write fp32 and convert back
    to bf16 for its convolution. A native BatchNorm under autocast keeps its input's bf16;
    these layers do the same. The cast is a differentiable (M, C)-sized copy: the gradient
    reaches the fp32 parameter.
    """
    if x.dtype in (torch.bfloat16, torch.float16) and p.dtype != x.dtype:
        return p.to(x.dtype)
    return p
