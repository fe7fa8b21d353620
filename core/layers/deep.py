"""Deep ensembles computed together: M independent members stacked in every parameter
(member m owns `weight[m]`, `bias[m]`; nothing is shared)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ConfigError
from core.layers.shapes import check_int, check_member_list, set_conv_geometry, split_members

__all__ = ["DeepConv2d", "DeepLinear"]


class DeepLinear(nn.Module):
    """M independent linear layers computed together with one batched matmul.

    Member m: y_m = x_m @ W_m^T + b_m with W (M, out, in), b (M, out), each member initialised
    like nn.Linear independently. Input/output member-major: (M * B, in) -> (M * B, out).
    Member m's parameters are exactly `weight[m]` and `bias[m]`; nothing is shared.
    """

    def __init__(
        self, in_features: int, out_features: int, ensemble_size: int, bias: bool = True
    ) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features)
        self.out_features = check_int("out_features", out_features)
        self.ensemble_size = check_int("ensemble_size", ensemble_size)
        self.weight = nn.Parameter(torch.empty(ensemble_size, out_features, in_features))
        if bias:
            self.bias = nn.Parameter(torch.empty(ensemble_size, out_features))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        for m in range(self.ensemble_size):
            nn.init.kaiming_uniform_(self.weight[m], a=math.sqrt(5))
            if self.bias is not None:
                nn.init.uniform_(self.bias[m], -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ConfigError(f"DeepLinear: expected input (M * B, in), got shape {tuple(x.shape)}")
        m = self.ensemble_size
        b = split_members(x, m, type(self).__name__)
        xm = x.reshape(m, b, self.in_features)  # (M, B, in)
        wt = self.weight.transpose(1, 2)  # (M, in, out)
        if self.bias is not None:
            y = torch.baddbmm(self.bias.unsqueeze(1), xm, wt)  # (M, 1, out) + (M, B, out)
        else:
            y = torch.bmm(xm, wt)
        return y.reshape(m * b, self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"ensemble_size={self.ensemble_size}, bias={self.bias is not None}"
        )


class DeepConv2d(nn.Module):
    """M independent 2-d convolutions computed as ONE grouped convolution (groups = M).

    Layout: channel-stacked, (B, M * C_in, H, W) -> (B, M * C_out, H', W'); channel block m
    belongs to member m, and y[:, m-th block] = conv2d(x[:, m-th block], weight[m], bias[m]).
    weight (M, C_out, C_in, kh, kw) and bias (M, C_out), each member initialised like
    nn.Conv2d independently; nothing is shared between members.

    Given a member list (M tensors (B, C_in, H, W)) instead, it returns the list of
    conv2d(x[m], weight[m], bias[m]): the same function as M separate convolutions, computed
    as M of them (faster than one grouped convolution on some devices: `core.models`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        ensemble_size: int,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        set_conv_geometry(
            self, in_channels, out_channels, kernel_size, stride, padding, ensemble_size
        )
        self.weight = nn.Parameter(
            torch.empty(ensemble_size, out_channels, in_channels, *self.kernel_size)
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(ensemble_size, out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        for m in range(self.ensemble_size):
            nn.init.kaiming_uniform_(self.weight[m], a=math.sqrt(5))
            if self.bias is not None:
                nn.init.uniform_(self.bias[m], -bound, bound)

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        m = self.ensemble_size
        if isinstance(x, list | tuple):
            check_member_list(x, m, self.in_channels, type(self).__name__)
            bias = self.bias if self.bias is not None else (None,) * m
            return [
                F.conv2d(xi, wi, bi, self.stride, self.padding)
                for xi, wi, bi in zip(x, self.weight, bias, strict=True)
            ]
        if x.dim() != 4 or x.shape[1] != m * self.in_channels:
            raise ConfigError(
                f"DeepConv2d: expected channel-stacked input (B, ensemble_size * in_channels = "
                f"{m * self.in_channels}, H, W), got shape {tuple(x.shape)}"
            )
        w = self.weight.view(m * self.out_channels, self.in_channels, *self.kernel_size)
        bias = self.bias.view(-1) if self.bias is not None else None  # (M * C_out,)
        return F.conv2d(x, w, bias, self.stride, self.padding, groups=m)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, ensemble_size={self.ensemble_size}, "
            f"bias={self.bias is not None}, layout=channel-stacked"
        )
