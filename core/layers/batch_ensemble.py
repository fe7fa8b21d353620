"""BatchEnsemble layers (Wen et al., 2020): one slow weight shared by all members, and per
member rank-1 fast weights `alpha` (input side) and `gamma` (output side); member-major layout.

Fast weights are the only parameters named `alpha` / `gamma`: other code (optimizer groups:
lower learning rate, no weight decay) finds them by that name suffix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.checks import fast_weight_init
from core.layers.shapes import check_int, like_activation, set_conv_geometry, split_members

__all__ = ["BEConv2d", "BELinear", "init_fast_weight"]


def init_fast_weight(
    tensor_or_shape: torch.Tensor | Sequence[int], v: float | None, name: str = "v"
) -> torch.Tensor:
    """Initialise a fast weight from the value `v` (the uncertainty-baselines convention).

    * v < 0:        i.i.d. N(1, |v|)  (|v| is the standard deviation)
    * v == 0:       all ones
    * 0 < v <= 1:   i.i.d. random signs, +1 with probability v and -1 otherwise
    * None:         all ones (the caller registers it as a frozen buffer)
    * anything else (|v| > 1, NaN, non-numbers): `ConfigError`.

    Given a tensor it is filled in place (without recording autograd history) and returned;
    given a shape a new float tensor on the default device is returned.
    """
    fast_weight_init(name, v)
    v = None if v is None else float(v)
    if isinstance(tensor_or_shape, torch.Tensor):
        t = tensor_or_shape
    else:
        t = torch.empty(tuple(int(s) for s in tensor_or_shape))
    with torch.no_grad():
        if v is None or v == 0.0:
            t.fill_(1.0)
        elif v < 0.0:
            t.normal_(mean=1.0, std=-v)
        else:
            t.bernoulli_(v).mul_(2.0).sub_(1.0)  # {0, 1} -> {-1, +1}
    return t


class _BatchEnsembleMixin(nn.Module):
    """Registers `alpha` (M, in) and `gamma` (M, out) fast weights: trainable parameters, or,
    for an init value None, frozen all-ones buffers that the forward pass skips."""

    ensemble_size: int
    alpha_init: float | None
    gamma_init: float | None

    def _init_be(
        self,
        weight: torch.Tensor,
        n_in: int,
        n_out: int,
        alpha: float | None,
        gamma: float | None,
        bias: bool,
    ) -> None:
        """Register slow weight, fast weights and per-member bias, then initialise them."""
        fast_weight_init("alpha", alpha)
        fast_weight_init("gamma", gamma)
        self.alpha_init = None if alpha is None else float(alpha)
        self.gamma_init = None if gamma is None else float(gamma)
        self.weight = nn.Parameter(weight)
        self._register_fast_weights(n_in, n_out)
        if bias:
            self.bias = nn.Parameter(torch.empty(self.ensemble_size, n_out))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def _register_fast_weights(self, n_in: int, n_out: int) -> None:
        for name, n, v in (("alpha", n_in, self.alpha_init), ("gamma", n_out, self.gamma_init)):
            t = init_fast_weight((self.ensemble_size, n), v, name)
            if v is None:
                self.register_buffer(name, t)
            else:
                self.register_parameter(name, nn.Parameter(t))

    def _reset_fast_weights(self) -> None:
        init_fast_weight(self.alpha, self.alpha_init, "alpha")
        init_fast_weight(self.gamma, self.gamma_init, "gamma")

    def _reset_member_bias(self, fan_in: int) -> None:
        # nn.Linear / nn.Conv2d's default bias init, drawn independently for every member.
        if self.bias is not None:
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)


class BELinear(_BatchEnsembleMixin):
    """BatchEnsemble linear layer (Wen et al., 2020).

    For member m with input rows x (B, in):

        y_m = ((x * alpha_m) @ W^T) * gamma_m + bias_m
            = x @ (W * (gamma_m alpha_m^T))^T + bias_m,

    i.e. member m's effective weight is the slow weight W (out, in), shared by all members,
    times the rank-1 matrix gamma_m alpha_m^T. Input and output are member-major:
    (M * B, ..., in) -> (M * B, ..., out). Fast weights are applied by broadcasting over a
    (M, B, ..., features) view; nothing is repeated per example.

    Parameters: `weight` (out, in) with nn.Linear's default init; `alpha` (M, in) and `gamma`
    (M, out) initialised by `init_fast_weight` (None: frozen ones, a buffer); `bias` (M, out).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        ensemble_size: int,
        alpha: float | None = 0.5,
        gamma: float | None = 0.5,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features)
        self.out_features = check_int("out_features", out_features)
        self.ensemble_size = check_int("ensemble_size", ensemble_size)
        self._init_be(
            torch.empty(out_features, in_features), in_features, out_features, alpha, gamma, bias
        )

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # as nn.Linear
        self._reset_fast_weights()
        self._reset_member_bias(self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.ensemble_size
        b = split_members(x, m, type(self).__name__)
        mid = (1,) * (x.dim() - 2)  # broadcast over any dims between batch and features
        if self.alpha_init is not None:
            # (M, B, ..., in) * (M, 1, ..., in)
            alpha = like_activation(self.alpha, x).view(m, 1, *mid, -1)
            x = (x.reshape(m, b, *x.shape[1:]) * alpha).view(x.shape)
        y = F.linear(x, self.weight)  # (M * B, ..., out)
        y = y.view(m, b, *y.shape[1:])  # (M, B, ..., out)
        gamma = self.gamma.view(m, 1, *mid, -1) if self.gamma_init is not None else None
        bias = self.bias.view(m, 1, *mid, -1) if self.bias is not None else None
        return _scale_shift(y, gamma, bias).reshape(m * b, *y.shape[2:])

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"ensemble_size={self.ensemble_size}, alpha_init={self.alpha_init}, "
            f"gamma_init={self.gamma_init}, bias={self.bias is not None}"
        )


def _scale_shift(
    y: torch.Tensor, gamma: torch.Tensor | None, bias: torch.Tensor | None
) -> torch.Tensor:
    """y * gamma + bias on the (M, B, ...) view, fused when both are present (in y's dtype
    where y is half precision: `like_activation`)."""
    gamma = None if gamma is None else like_activation(gamma, y)
    bias = None if bias is None else like_activation(bias, y)
    if gamma is not None and bias is not None:
        return torch.addcmul(bias, y, gamma)
    if gamma is not None:
        return y * gamma
    if bias is not None:
        return y + bias
    return y


class BEConv2d(_BatchEnsembleMixin):
    """BatchEnsemble 2-d convolution.

    For member m with input rows x (B, C_in, H, W):

        y_m = conv2d(x * alpha_m[None, :, None, None], W) * gamma_m[None, :, None, None]
              + bias_m[None, :, None, None]
            = conv2d(x, W * (gamma_m alpha_m^T)[:, :, None, None]) + bias_m,

    i.e. member m's effective kernel is the shared slow kernel W (C_out, C_in, kh, kw) scaled
    by the rank-1 matrix gamma_m alpha_m^T over (out, in) channels. Input and output are
    member-major: (M * B, C_in, H, W) -> (M * B, C_out, H', W'). One convolution serves all
    members; the fast weights broadcast over a (M, B, C, H, W) view.

    Parameters: `weight` (C_out, C_in, kh, kw) with nn.Conv2d's default init; `alpha`
    (M, C_in), `gamma` (M, C_out) from `init_fast_weight` (None: frozen ones, a buffer);
    `bias` (M, C_out).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        ensemble_size: int,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        alpha: float | None = 0.5,
        gamma: float | None = 0.5,
        bias: bool = True,
    ) -> None:
        super().__init__()
        set_conv_geometry(
            self, in_channels, out_channels, kernel_size, stride, padding, ensemble_size
        )
        self._init_be(
            torch.empty(out_channels, in_channels, *self.kernel_size),
            in_channels,
            out_channels,
            alpha,
            gamma,
            bias,
        )

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # as nn.Conv2d
        self._reset_fast_weights()
        self._reset_member_bias(self.in_channels * self.kernel_size[0] * self.kernel_size[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.ensemble_size
        b = split_members(x, m, type(self).__name__)
        if self.alpha_init is not None:
            # (M, B, C_in, H, W) * (M, 1, C_in, 1, 1)
            alpha = like_activation(self.alpha, x).view(m, 1, -1, 1, 1)
            x = (x.reshape(m, b, *x.shape[1:]) * alpha).view(x.shape)
        y = F.conv2d(x, self.weight, None, self.stride, self.padding)  # (M * B, C_out, H', W')
        y = y.view(m, b, *y.shape[1:])  # (M, B, C_out, H', W')
        gamma = self.gamma.view(m, 1, -1, 1, 1) if self.gamma_init is not None else None
        bias = self.bias.view(m, 1, -1, 1, 1) if self.bias is not None else None
        return _scale_shift(y, gamma, bias).reshape(m * b, *y.shape[2:])

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, ensemble_size={self.ensemble_size}, "
            f"alpha_init={self.alpha_init}, gamma_init={self.gamma_init}, "
            f"bias={self.bias is not None}"
        )
