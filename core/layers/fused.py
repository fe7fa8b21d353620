"""The fused BatchEnsemble conv -> norm -> ReLU: a `BEConv2d` (bias-free) followed by a
`BEBatchNorm2d` and a ReLU in fewer passes over the activations, with a hand-written backward.

An optimisation only: numerically the same function (outputs, gradients, running statistics)
as calling the three layers in turn, with the same parameters and state_dict. The model can be
understood without this file.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.layers.batch_ensemble import BEConv2d
from core.layers.norm import BEBatchNorm2d
from core.layers.shapes import like_activation, split_members

__all__ = ["BEConvNormReLU", "be_conv_norm_relu"]


def _accumulation_dtype(t: torch.Tensor) -> torch.dtype | None:
    """fp32 for half-precision tensors; None (their own dtype, without a cast) otherwise."""
    return torch.float32 if t.dtype in (torch.bfloat16, torch.float16) else None


def _channel_rows(tv: torch.Tensor) -> torch.Tensor | None:
    """The (M, B, C, X) view `tv` as rows of channels, a view without a copy, where its
    channels are the innermost dim (channels_last): (M, B * X, C) for a member-major tensor,
    (B * X, M * C) for a channel-stacked one (the members' channel blocks side by side in each
    row). None where X is innermost (contiguous NCHW)."""
    m, b, c, x = tv.shape
    if tv.stride(2) != 1 or c == 1:
        return None
    if tv.stride(3) == c and tv.stride(1) == c * x:  # member-major channels_last
        return tv.permute(0, 1, 3, 2).reshape(m, b * x, c)
    if tv.stride(0) == c and tv.stride(3) == m * c and tv.stride(1) == m * c * x:
        return tv.permute(1, 3, 0, 2).reshape(b * x, m * c)  # channel-stacked
    return None


def _member_sums(tv: torch.Tensor, square: bool = False) -> torch.Tensor:
    """Per-member, per-channel sums (M, C) of an (M, B, C, X) view (of its squares with
    `square`), accumulated in fp32 for a half-precision tensor, as native BatchNorm keeps its
    statistics under autocast.

    Reduced along the memory layout, never across it: over the contiguous X first where X is
    innermost (a vectorised pass without a temporary; torch.var_mean over the strided dims
    (1, 3) measured 10-30x slower on CPU), over the rows of `_channel_rows` where the channels
    are. A half-precision tensor is converted to fp32 once before a sum of squares: on CPU
    that copy and an fp32 square read faster than a bf16 square (0.7 ms against 3.8 ms at
    4 x 32 images of 16 x 32 x 32). A member-broadcast view (stride 0 over M) is summed once.
    """
    if tv.stride(0) == 0 and tv.shape[0] > 1:
        return _member_sums(tv[:1], square).expand(tv.shape[0], -1)
    acc = _accumulation_dtype(tv)
    rows = _channel_rows(tv)
    if rows is None:  # X innermost
        if square:
            return torch.linalg.vector_norm(tv, dim=-1, dtype=acc).square_().sum(1)
        return tv.sum(-1, dtype=acc).sum(1)
    if square:
        rows = rows.float() if acc is not None else rows
        return (rows * rows).sum(-2).view(tv.shape[0], tv.shape[2])
    return rows.sum(-2, dtype=acc).view(tv.shape[0], tv.shape[2])


def _like_layout(zv: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """An empty tensor with the strides of the (M, B, C, X) view `zv` (a member-broadcast zv,
    stride 0 over M, gets None: the default layout, its gradient is summed over M anyway)."""
    if zv.stride(0) == 0:
        return None
    return torch.empty_strided(zv.shape, zv.stride(), dtype=dtype, device=zv.device)


def _member_moments(zv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member, per-channel sums of z and z^2 (M, C) of an (M, B, C, X) view, in fp32.

    The variance E[z^2] - E[z]^2 then loses relative precision of about eps * E[z]^2 /
    var(z); for conv outputs, whose mean is of the order of their spread, that is within
    float tolerance. Channels innermost and half precision: one fp32 copy serves both sums
    (squared in place), the fewest passes over z measured on CPU.
    """
    rows = _channel_rows(zv) if zv.stride(0) != 0 else None
    if rows is None or _accumulation_dtype(zv) is None:
        return _member_sums(zv), _member_sums(zv, square=True)
    m, c = zv.shape[0], zv.shape[2]
    r = rows.float()
    return r.sum(-2).view(m, c), r.mul_(r).sum(-2).view(m, c)


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
        # in z's dtype: bf16 z under autocast gives a bf16 output, as native BatchNorm does
        su = like_activation(scale_u, zv).view(m, 1, c, 1)
        tu = like_activation(shift_u, zv).view(m, 1, c, 1)
        if out is None or torch.compiler.is_compiling():  # out= does not trace; inductor fuses
            out = torch.addcmul(tu, zv, su)
        else:
            torch.addcmul(tu, zv, su, out=out)
        if alpha_out is None:
            out.clamp_min_(0)
        else:
            pos = (alpha_out > 0).view(m, 1, c, 1)
            # one bound at a time: clamp with both bounds as tensors measured 10x slower on CPU
            out.clamp_(min=torch.where(pos, 0.0, -math.inf).to(out.dtype))
            out.clamp_(max=torch.where(pos, math.inf, 0.0).to(out.dtype))
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
        # (M, B, C, X) -> (M, C), each reduced along its memory layout (`_member_sums`)
        g1 = _member_sums(gu)
        gz = gu * zv  # in eager mode, the buffer d_z is then written into
        g2 = _member_sums(gz)
        d_alpha = None
        if alpha_out is not None:  # u = z * scale * a + shift * a; then G1, G2 of t = u / a
            d_alpha = torch.addcmul(g2 * scale, g1, shift)
            g1, g2 = g1 * alpha_out, g2 * alpha_out
        d_bias = g1
        h = torch.addcmul(g2 if g is None else g * g2, mu, g1, value=-1)  # (M, C)
        d_weight = s * h
        su = like_activation(scale_u, gu).view(m, 1, c, 1)
        # d_z into gz's buffer when it has the dtype d_z would get anyway and zv's layout (a
        # channel-stacked zv wants its gradient channel-stacked: in the member-major layout
        # the autograd of the view would copy it across layouts, a slow strided copy)
        reuse = (
            eager
            and gz.dtype == torch.promote_types(gu.dtype, su.dtype)
            and gz.stride() == zv.stride()
        )
        buffer = gz if reuse else _like_layout(zv, gz.dtype) if eager else None
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
            p, q = like_activation(p, gu), like_activation(q, gu)
            d_z = torch.addcmul(q.view(-1, 1, c, 1), gu, su, out=buffer)
            d_z.addcmul_(zv, p.view(-1, 1, c, 1))
            if g is not None:
                d_gamma = torch.addcmul(ws * g2, z1, w0, value=-1)
                d_gamma.addcmul_(g * z2, u, value=-1)
        else:
            d_z = torch.mul(gu, su, out=buffer)
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
    shared_input: bool = False,
    alpha_next: torch.Tensor | None = None,
    alpha_applied: bool = False,
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

    With `shared_input=True`, x is one input (B, C_in, H, W) that every member sees (the images, or
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
    `alpha_applied=True` and skips its own multiply (and its backward: d a = sum(grad * relu(t))
    comes from the sums the backward makes anyway). Placed before a max-pool this would be
    wrong (a negative a turns the max into a min), so `BEConvNormReLU` only passes it between
    blocks the builder links (no pooling between).
    """
    m = conv.ensemble_size
    c = conv.out_channels
    out = None
    if shared_input:
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
        # z's dtype (bf16 under autocast), as `_ScaledNormReLU` computes the output in it
        out = torch.empty(shape, dtype=z.dtype, device=z.device, memory_format=fmt)
        out = out.view(m, b, c, -1)
    else:
        b = split_members(x, m, type(conv).__name__)
        if conv.alpha_init is not None and not alpha_applied:
            alpha = like_activation(conv.alpha, x).view(m, 1, -1, 1, 1)
            x = (x.view(m, b, *x.shape[1:]) * alpha).view(x.shape)
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
    return out.reshape(shape)  # a view, but for a shared input when compiled


class BEConvNormReLU(nn.Module):
    """relu(norm(conv(x))) for a bias-free `BEConv2d` and a `BEBatchNorm2d`, as one module
    computed by `be_conv_norm_relu` (timm's ConvNormAct idea: the builder chooses it where the
    layers allow). Children `conv` and `norm`: the parameters, buffers and state_dict keys of
    the unfused layers.

    `shared_input`: x is one input (B, ...) that every member sees, tiled inside the
    convolution. `carry_alpha_to(successor)` (the builder, for a successor that follows with no
    pooling between) lets this block apply the successor's alpha in its output pass, which the
    successor then skips: on CPU in eager mode only, and only while that alpha has no entry
    exactly 0 (where relu(t) * a would lose the ReLU's mask); the zero check reads the values (a
    device sync on CUDA, a graph break under torch.compile, whose fusion makes the multiply
    free there anyway). The check runs once per pair, in this block's forward, which tells the
    successor for its next call only (`_alpha_applied`, consumed there): a successor called on
    its own, without this block's output, applies its alpha itself.
    """

    def __init__(self, conv: BEConv2d, norm: BEBatchNorm2d, shared_input: bool = False) -> None:
        super().__init__()
        self.conv = conv
        self.norm = norm
        self.shared_input = shared_input
        # the link in a tuple, so that nn.Module registers no second parent
        self._successor: tuple[BEConvNormReLU, ...] = ()
        # set by the predecessor's forward when its output already carries this block's alpha
        self._alpha_applied = False

    def carry_alpha_to(self, successor: BEConvNormReLU) -> None:
        self._successor = (successor,)

    def alpha_out(self, device: torch.device) -> torch.Tensor | None:
        """The successor's alpha when this block applies it to its output on `device`."""
        if self._successor and self._successor[0]._alpha_carried(device):
            return self._successor[0].conv.alpha
        return None

    def _alpha_carried(self, device: torch.device) -> bool:
        """Whether a predecessor may apply this block's alpha on `device`."""
        return (
            device.type == "cpu"
            and not torch.compiler.is_compiling()
            and self.conv.alpha_init is not None
            and not bool(self.conv.alpha.eq(0).any())
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        applied, self._alpha_applied = self._alpha_applied, False
        alpha_out = self.alpha_out(x.device)
        if self._successor:
            self._successor[0]._alpha_applied = alpha_out is not None
        return be_conv_norm_relu(self.conv, self.norm, x, self.shared_input, alpha_out, applied)

    def extra_repr(self) -> str:
        return "shared_input=True" if self.shared_input else ""
