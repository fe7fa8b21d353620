"""Ensemble layers: BatchEnsemble (shared slow weight, per-member rank-1 fast weights), deep
ensembles computed together (stacked independent members), and ensemble normalisation.

Notation: M = ensemble size, B = examples per member, N = M * B.

Two activation layouts are used (see `core.models` for where each is used):

* member-major: the ensemble is stacked on the batch dimension, shape (M * B, C, ...);
  rows m * B ... (m + 1) * B - 1 belong to member m. `BELinear`, `BEConv2d`, `DeepLinear`,
  `BEBatchNorm2d` and `MemberBatchNorm2d` (default) take and return this layout.
* channel-stacked: the ensemble is stacked on the channel dimension, shape (B, M * C, H, W);
  channels m * C ... (m + 1) * C - 1 belong to member m. `DeepConv2d` and
  `MemberBatchNorm2d(channel_stacked=True)` use it, so a deep trunk runs as grouped
  convolutions (groups = M) without any transposes between its layers.

The same two deep layers also take a third form, a member list: a list of M tensors
(B, C, H, W), element m member m's activations. They then loop over the members, each an
ordinary convolution / BatchNorm on member m's slice of the same parameters and statistics
(`weight[m]`, `bias[m]`, channel block m of the running statistics): one parameter layout, two
computations, chosen per device by `core.models` (`deep_impl`).

Fast weights (`alpha`, `gamma`) are the only parameters named `alpha` / `gamma`: other code
(optimizer groups: lower learning rate, no weight decay) finds them by that name suffix.
Normalisation layers name their per-member affine parameters `weight` / `bias`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from core.config import fast_weight_init, integer
from core.errors import ConfigError

__all__ = [
    "BEBatchNorm2d",
    "BEConv2d",
    "BELinear",
    "DeepConv2d",
    "DeepLinear",
    "MemberBatchNorm2d",
    "be_conv_norm_relu",
    "init_fast_weight",
]


COUNT = integer(lo=1)


# ----------------------------------------------------------------------------------------------
# argument checks (core.config's, so that a layer and a config word a refusal alike)
# ----------------------------------------------------------------------------------------------
def _check_int(name: str, value: int, lo: int = 1) -> int:
    (COUNT if lo == 1 else integer(lo=lo))(name, value)
    return value


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


def _split_members(x: torch.Tensor, ensemble_size: int, layer: str) -> int:
    """Return B for a member-major input (M * B, ...); refuse a first dim not divisible by M."""
    n = x.shape[0]
    if n % ensemble_size != 0:
        raise ConfigError(
            f"{layer}: input first dimension {n} is not divisible by ensemble_size="
            f"{ensemble_size}; expected member-major input of shape (ensemble_size * B, ...) "
            "with member 0's B rows first"
        )
    return n // ensemble_size


# ----------------------------------------------------------------------------------------------
# BatchEnsemble
# ----------------------------------------------------------------------------------------------
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
        self.in_features = _check_int("in_features", in_features)
        self.out_features = _check_int("out_features", out_features)
        self.ensemble_size = _check_int("ensemble_size", ensemble_size)
        self._init_be(
            torch.empty(out_features, in_features), in_features, out_features, alpha, gamma, bias
        )

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # as nn.Linear
        self._reset_fast_weights()
        self._reset_member_bias(self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.ensemble_size
        b = _split_members(x, m, type(self).__name__)
        mid = (1,) * (x.dim() - 2)  # broadcast over any dims between batch and features
        if self.alpha_init is not None:
            # (M, B, ..., in) * (M, 1, ..., in)
            x = (x.reshape(m, b, *x.shape[1:]) * self.alpha.view(m, 1, *mid, -1)).view(x.shape)
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
    """y * gamma + bias on the (M, B, ...) view, fused when both are present."""
    if gamma is not None and bias is not None:
        return torch.addcmul(bias, y, gamma)
    if gamma is not None:
        return y * gamma
    if bias is not None:
        return y + bias
    return y


def _set_conv_geometry(
    layer: nn.Module,
    in_channels: int,
    out_channels: int,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int],
    padding: int | tuple[int, int],
    ensemble_size: int,
) -> None:
    """Check and store a conv layer's sizes (shared by BEConv2d and DeepConv2d)."""
    layer.in_channels = _check_int("in_channels", in_channels)
    layer.out_channels = _check_int("out_channels", out_channels)
    layer.kernel_size = _pair(kernel_size)
    layer.stride = _pair(stride)
    layer.padding = _pair(padding)
    for k in layer.kernel_size:
        _check_int("kernel_size", k)
    for s in layer.stride:
        _check_int("stride", s)
    for p in layer.padding:
        _check_int("padding", p, lo=0)
    layer.ensemble_size = _check_int("ensemble_size", ensemble_size)


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
        _set_conv_geometry(
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
        b = _split_members(x, m, type(self).__name__)
        if self.alpha_init is not None:
            # (M, B, C_in, H, W) * (M, 1, C_in, 1, 1)
            x = (x.reshape(m, b, *x.shape[1:]) * self.alpha.view(m, 1, -1, 1, 1)).view(x.shape)
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


# ----------------------------------------------------------------------------------------------
# Deep ensembles: M independent members in stacked parameters
# ----------------------------------------------------------------------------------------------
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
        self.in_features = _check_int("in_features", in_features)
        self.out_features = _check_int("out_features", out_features)
        self.ensemble_size = _check_int("ensemble_size", ensemble_size)
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
        b = _split_members(x, m, type(self).__name__)
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
        _set_conv_geometry(
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
            _check_member_list(x, m, self.in_channels, type(self).__name__)
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


def _check_member_list(xs: Sequence[torch.Tensor], m: int, channels: int, layer: str) -> None:
    """Refuse a member list that is not M tensors (B, channels, H, W)."""
    if len(xs) != m or any(x.dim() != 4 or x.shape[1] != channels for x in xs):
        shapes = [tuple(x.shape) for x in xs]
        raise ConfigError(
            f"{layer}: expected a member list of ensemble_size={m} tensors (B, {channels}, H, W), "
            f"got shapes {shapes}"
        )


# ----------------------------------------------------------------------------------------------
# Normalisation
# ----------------------------------------------------------------------------------------------
class _EnsembleNorm(nn.Module):
    """Running statistics over `num_stats` channels plus per-member affine `weight`/`bias`
    (M, C). Train/eval behaviour and the momentum update are those of nn.BatchNorm2d."""

    def __init__(
        self, num_features: int, ensemble_size: int, num_stats: int, eps: float, momentum: float
    ) -> None:
        super().__init__()
        self.num_features = _check_int("num_features", num_features)
        self.ensemble_size = _check_int("ensemble_size", ensemble_size)
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(ensemble_size, num_features))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, num_features))
        self.register_buffer("running_mean", torch.zeros(num_stats))
        self.register_buffer("running_var", torch.ones(num_stats))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def _batch_norm(self, x: torch.Tensor, weight=None, bias=None) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            weight,
            bias,
            self.training,
            self.momentum,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, ensemble_size={self.ensemble_size}, eps={self.eps}, "
            f"momentum={self.momentum}"
        )


class BEBatchNorm2d(_EnsembleNorm):
    """BatchNorm for a batch ensemble: running statistics shared by all members (computed over
    all M * B rows), per-member affine: y_m = (x_m - mu) / sqrt(var + eps) * weight_m + bias_m.

    Member-major layout (M * B, C, H, W); `weight`, `bias` are (M, C).
    """

    def __init__(
        self, num_features: int, ensemble_size: int, eps: float = 1e-5, momentum: float = 0.1
    ) -> None:
        super().__init__(num_features, ensemble_size, num_features, eps, momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.ensemble_size
        b = _split_members(x, m, type(self).__name__)
        y = self._batch_norm(x)  # shared statistics, no affine
        y = y.view(m, b, *y.shape[1:])  # (M, B, C, H, W)
        w = self.weight.view(m, 1, -1, 1, 1)
        bias = self.bias.view(m, 1, -1, 1, 1)
        return torch.addcmul(bias, y, w).view(x.shape)


def _member_moments(zv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member, per-channel sums of z and z^2 of an (M, B, C, X) view, in fp32 (as native
    BatchNorm keeps its statistics, also for bf16 z under autocast).

    Reduced over the contiguous X first (a vectorised pass each, no temporary of z's size):
    torch.var_mean over the strided dims (1, 3) measured 10-30x slower on CPU. The variance
    E[z^2] - E[z]^2 then loses relative precision of about eps * E[z]^2 / var(z); for conv
    outputs, whose mean is of the order of their spread, that is within float tolerance.
    """
    acc = _accumulation_dtype(zv)
    z1 = zv.sum(-1, dtype=acc).sum(1)
    z2 = torch.linalg.vector_norm(zv, dim=-1, dtype=acc).square_().sum(1)
    return z1, z2


def _accumulation_dtype(t: torch.Tensor) -> torch.dtype | None:
    """fp32 for half-precision tensors; None (their own dtype, without a cast) otherwise."""
    return torch.float32 if t.dtype in (torch.bfloat16, torch.float16) else None


class _ScaledNormReLU(torch.autograd.Function):
    """relu(BEBatchNorm2d(z * gamma_m)) on the (M, B, C, X) view of a conv output z, with a
    hand-written backward: two reductions and two elementwise passes, as native BatchNorm
    plus ReLU need (see `be_conv_norm_relu` for the forward maths).

    Backward, per channel, with t = out's pre-activation, g = grad_out * [t > 0], N the number
    of values over all members, s = 1 / sqrt(var + eps) and yhat = s (gamma_m z - mu):

        G1_m = sum_m g,  G2_m = sum_m g z   (sums over member m's values)
        d beta_m = G1_m,  d w_m = s (gamma_m G2_m - mu G1_m)
        k0 = sum_m w_m G1_m / N,  k1 = s sum_m w_m (gamma_m G2_m - mu G1_m) / N
        d y = s (w_m g - k0 - yhat k1)      (BatchNorm's backward, statistics over all rows)
        d z = gamma_m d y = g A_m + z P_m + Q_m,  P_m = -gamma_m^2 s^2 k1,
              Q_m = gamma_m s (s mu k1 - k0)
        d gamma_m = sum_m d y * z = s (w_m G2_m - k0 Z1_m - s k1 (gamma_m Z2_m - mu Z1_m)),

    Z1_m, Z2_m the sums of z and z^2 from the forward moments. In eval mode mu and s are
    constants: d z = g A_m, d gamma_m = w_m s G2_m.
    """

    @staticmethod
    def forward(
        ctx,
        zv,
        gamma,
        weight,
        bias,
        running_mean,
        running_var,
        training,
        momentum,
        eps,
        out,
        alpha_out,
    ):
        # `out`: None, or an empty (M, B, C, X) view to write into (member-major storage for a
        # zv that is a channel-stacked or broadcast view; see be_conv_norm_relu).
        # `alpha_out`: None, or the next conv's alpha (M, C), no entry 0, applied to the output.
        m, b, c, x = zv.shape
        n = m * b * x  # values per channel over all members
        g = gamma  # None: no gamma (all ones), and none of its multiplies
        if training:
            z1, z2 = _member_moments(zv)  # (M, C): sums of z and z^2 over member m's values
            # statistics of y = gamma_m z over all members: E[y], E[y^2] - E[y]^2
            mu = (z1 if g is None else g * z1).sum(0) / n
            var = ((z2 if g is None else g * g * z2).sum(0) / n - mu * mu).clamp_min_(0)
            running_mean.lerp_(mu, momentum)
            running_var.lerp_(var * (n / max(n - 1, 1)), momentum)
        else:
            mu, var = running_mean, running_var
            z1 = z2 = None
        s = torch.rsqrt(var + eps)  # (C,)
        ws = weight * s  # (M, C)
        scale = ws if g is None else g * ws
        shift = torch.addcmul(bias, ws, mu, value=-1)  # bias - mu * ws
        if alpha_out is None:
            scale_u, shift_u = scale, shift
        else:  # relu(t) * a = clamp(t * a) to [0, inf) where a > 0, to (-inf, 0] where a < 0
            scale_u, shift_u = scale * alpha_out, shift * alpha_out
        su, tu = scale_u.view(m, 1, c, 1), shift_u.view(m, 1, c, 1)
        if out is None or torch.compiler.is_compiling():  # out= does not trace; inductor fuses
            out = torch.addcmul(tu, zv, su)
        else:
            torch.addcmul(tu, zv, su, out=out)
        if alpha_out is None:
            out.clamp_min_(0)
        else:
            pos = (alpha_out > 0).view(m, 1, c, 1)
            # one bound at a time: clamp with both bounds as tensors measured 10x slower on CPU
            out.clamp_(min=torch.where(pos, 0.0, -math.inf))
            out.clamp_(max=torch.where(pos, math.inf, 0.0))
        ctx.save_for_backward(zv, out, g, ws, mu, s, scale, shift, scale_u, alpha_out, z1, z2)
        ctx.training = training
        return out

    @staticmethod
    def backward(ctx, grad_out):
        zv, out, g, ws, mu, s, scale, shift, scale_u, alpha_out, z1, z2 = ctx.saved_tensors
        m, b, c, x = zv.shape
        # Full-size temporaries are written in place where they can be: on CPU a fresh
        # activation-sized tensor costs several times an in-place pass over one (new pages).
        eager = not torch.compiler.is_compiling()  # out= does not trace; inductor fuses
        # gu: the gradient of the pre-activation u = t * a (t without alpha_out); the ReLU (or
        # the clamp) passes it where out != 0
        if alpha_out is None:
            gu = torch.ops.aten.threshold_backward(grad_out, out, 0)
        elif eager:
            gu = out.abs()
            torch.ops.aten.threshold_backward.grad_input(grad_out, gu, 0, grad_input=gu)
        else:
            gu = torch.ops.aten.threshold_backward(grad_out, out.abs(), 0)
        # (M, B, C, X) -> (M, C) as contiguous sums over X first: many times faster on CPU
        # than one reduction over the strided dims (1, 3)
        acc = _accumulation_dtype(gu)
        g1 = gu.sum(-1, dtype=acc).sum(1)
        gz = gu * zv  # in eager mode, the buffer d_z is then written into
        g2 = gz.sum(-1, dtype=acc).sum(1)
        d_alpha = None
        if alpha_out is not None:  # u = z * scale * a + shift * a; then G1, G2 of t = u / a
            d_alpha = torch.addcmul(g2 * scale, g1, shift)
            g1, g2 = g1 * alpha_out, g2 * alpha_out
        d_bias = g1
        h = torch.addcmul(g2 if g is None else g * g2, mu, g1, value=-1)  # (M, C)
        d_weight = s * h
        su = scale_u.view(m, 1, c, 1)
        # d_z into gz's buffer when it has the dtype d_z would get anyway
        reuse = eager and gz.dtype == torch.promote_types(gu.dtype, su.dtype)
        d_gamma = None
        if ctx.training:
            n = m * b * x
            # with ws = w_m s (saved by the forward): k0 s = sum_m ws G1_m / N and
            # k1 = sum_m ws h_m / N in one reduction; then u = s^2 k1, w0 = k0 s - u mu, and
            # P_m = -gamma_m^2 u, Q_m = -gamma_m w0, d gamma_m = ws G2_m - w0 Z1_m - u gamma_m Z2_m
            k0s, k1 = torch.stack((g1, h)).mul_(ws).sum(1).div_(n).unbind(0)  # (C,) each
            u = s * s * k1
            w0 = torch.addcmul(k0s, u, mu, value=-1)
            if g is None:  # (C,): shared by the members
                p, q = u.neg(), w0.neg()
            else:
                p, q = (g * g * u).neg_(), (g * w0).neg_()
            d_z = torch.addcmul(q.view(-1, 1, c, 1), gu, su, out=gz if reuse else None)
            d_z.addcmul_(zv, p.view(-1, 1, c, 1))
            if g is not None:
                d_gamma = torch.addcmul(ws * g2, z1, w0, value=-1)
                d_gamma.addcmul_(g * z2, u, value=-1)
        else:
            d_z = torch.mul(gu, su, out=gz if reuse else None)
            if g is not None:
                d_gamma = ws * g2
        return (
            d_z,
            d_gamma,
            d_weight,
            d_bias,
            None,
            None,
            None,
            None,
            None,
            None,
            d_alpha,
        )


def be_conv_norm_relu(
    conv: BEConv2d,
    norm: BEBatchNorm2d,
    x: torch.Tensor,
    plain: bool = False,
    alpha_next: torch.Tensor | None = None,
    alpha_given: bool = False,
) -> torch.Tensor:
    """relu(norm(conv(x))) for a bias-free `BEConv2d` followed by a `BEBatchNorm2d`, in fewer
    passes over the activations; numerically the same function (outputs, gradients, running
    statistics) as calling the three in turn.

    With z = conv2d(x * alpha_m, W) the shared convolution and y_m = gamma_m z_m the conv's
    output, the norm's statistics over all M * B rows follow from per-member moments of z
    (law of total variance; per channel, each member has the same number of values):

        mu  = mean_m(gamma_m mean_m(z)),
        var = mean_m(gamma_m^2 var_m(z)) + mean_m((gamma_m mean_m(z) - mu)^2),

    and the gamma scale, the normalisation and the norm's per-member affine (w_m, beta_m)
    compose into one per-member scale and shift of z:

        out_m = relu(z_m * A_m + C_m),  A_m = gamma_m w_m / s,  C_m = beta_m - mu w_m / s,
        s = sqrt(var + eps).

    So the activations are read once for the moments and once for scale, shift and ReLU, where
    the unfused layers make separate passes for gamma, the normalisation, the affine and the
    ReLU; the backward (`_ScaledNormReLU`) is written out likewise. In eval mode mu and var are
    the running statistics, updated in training as nn.BatchNorm2d does (unbiased variance,
    `momentum`).

    With `plain=True`, x is one input (B, C_in, H, W) that every member sees (the images, or
    an activation computed once for all members), and the result is the same as for x tiled
    to (M * B, ...) member-major, without tiling it: alpha moves into the kernel,
    conv2d(x * alpha_m, W) = conv2d(x, W * alpha_m[None, :, None, None]), and one convolution
    of x with the M stacked kernels (M * C_out output channels) gives every member's z in a
    channel-stacked view; with alpha None z is the same for all members, and one convolution
    of the B rows is broadcast. On the images this also drops the gradient of the input that
    the tiled alpha multiply needed, and the multiply itself.

    `alpha_next` (M, C_out), the next conv's alpha with no entry 0, is applied to the output in
    the same pass: relu(t) * a = clamp(t * a, 0, inf) where a > 0 and clamp(t * a, -inf, 0)
    where a < 0, so the result is that conv's input x * alpha_m; that conv is then called with
    `alpha_given=True` and skips its own multiply (and its backward: d a = sum(grad * relu(t))
    comes from the sums the backward makes anyway). Placed before a max-pool this would be
    wrong (a negative a turns the max into a min), so `core.models` only passes it between
    blocks without pooling.
    """
    m = conv.ensemble_size
    c = conv.out_channels
    out = None
    if plain:
        b = x.shape[0]
        if conv.alpha_init is None:
            z = F.conv2d(x, conv.weight, None, conv.stride, conv.padding)  # (B, C, H', W')
            zv = z.view(1, b, c, -1).expand(m, b, c, -1)
        else:
            w = (conv.weight.unsqueeze(0) * conv.alpha.view(m, 1, -1, 1, 1)).flatten(0, 1)
            z = F.conv2d(x, w, None, conv.stride, conv.padding)  # (B, M * C, H', W')
            zv = z.view(b, m, c, -1).transpose(0, 1)
        shape = (m * b, c, *z.shape[2:])
        fmt = (
            torch.channels_last
            if z.is_contiguous(memory_format=torch.channels_last) and not z.is_contiguous()
            else torch.contiguous_format
        )
        # the dtype addcmul's promotion gives (fp32 under bf16 autocast, as for tiled x)
        dtype = torch.promote_types(z.dtype, norm.weight.dtype)
        out = torch.empty(shape, dtype=dtype, device=z.device, memory_format=fmt)
        out = out.view(m, b, c, -1)
    else:
        b = _split_members(x, m, type(conv).__name__)
        if conv.alpha_init is not None and not alpha_given:
            x = (x.view(m, b, *x.shape[1:]) * conv.alpha.view(m, 1, -1, 1, 1)).view(x.shape)
        z = F.conv2d(x, conv.weight, None, conv.stride, conv.padding)  # (M * B, C, H', W')
        shape = z.shape
        zv = z.view(m, b, c, -1)
    if norm.training:
        norm.num_batches_tracked.add_(1)
    out = _ScaledNormReLU.apply(
        zv,
        conv.gamma if conv.gamma_init is not None else None,
        norm.weight,
        norm.bias,
        norm.running_mean,
        norm.running_var,
        norm.training,
        norm.momentum,
        norm.eps,
        out,
        alpha_next,
    )
    return out.reshape(shape)  # a view, but for the plain input when compiled


class MemberBatchNorm2d(_EnsembleNorm):
    """Fully per-member BatchNorm: member m has its own statistics and affine parameters,
    exactly as M separate nn.BatchNorm2d(C). `weight`, `bias` are (M, C); running statistics
    (M * C,), member-major blocks.

    Computed as one BatchNorm over M * C channels of the channel-stacked view
    (B, M * C, H, W). With `channel_stacked=True` the input already has that layout (deep
    ensembles); otherwise it is member-major (M * B, C, H, W) and is transposed to it and back.
    A member list (M tensors (B, C, H, W), deep ensembles) is normalised member by member, each
    with its own channel block of the running statistics (updated in place, through views);
    `num_batches_tracked` counts one call once in every form.
    """

    def __init__(
        self,
        num_features: int,
        ensemble_size: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        channel_stacked: bool = False,
    ) -> None:
        super().__init__(num_features, ensemble_size, ensemble_size * num_features, eps, momentum)
        self.channel_stacked = channel_stacked

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        m, c = self.ensemble_size, self.num_features
        if isinstance(x, list | tuple):
            return self._member_list(x)
        w, bias = self.weight.view(-1), self.bias.view(-1)  # (M * C,)
        if self.channel_stacked:
            return self._batch_norm(x, w, bias)
        b = _split_members(x, m, type(self).__name__)
        rest = x.shape[2:]
        # (M * B, C, ...) -> (M, B, C, ...) -> (B, M, C, ...) -> (B, M * C, ...)
        xs = x.reshape(m, b, c, *rest).transpose(0, 1).reshape(b, m * c, *rest)
        y = self._batch_norm(xs, w, bias)
        # and back: (B, M * C, ...) -> (B, M, C, ...) -> (M, B, C, ...) -> (M * B, C, ...)
        return y.view(b, m, c, *rest).transpose(0, 1).reshape(x.shape)

    def _member_list(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        m, c = self.ensemble_size, self.num_features
        _check_member_list(xs, m, c, type(self).__name__)
        if self.training:
            self.num_batches_tracked.add_(1)
        # channel block i of the (M * C,) statistics, as (M, C) row views written in place
        means, variances = self.running_mean.view(m, c), self.running_var.view(m, c)
        return [
            F.batch_norm(
                xi,
                means[i],
                variances[i],
                self.weight[i],
                self.bias[i],
                self.training,
                self.momentum,
                self.eps,
            )
            for i, xi in enumerate(xs)
        ]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", channel_stacked={self.channel_stacked}"
