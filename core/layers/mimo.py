"""MIMO (Havasi et al., ICLR 2021, "Training independent subnetworks for robust prediction"):
M members as one ordinary network with M inputs and M outputs.

Notation: M members, images (B, C, H, W), K classes, the first conv C -> C_1 with kernel k,
the classifier F -> K. The members' M inputs x_1 ... x_M are stacked on the channel axis,
member m's input in channel block m (the `channel` layout of `core.layers`):

    X = [x_1, ..., x_M]              (B, M * C, H, W)
    first conv:  y = conv2d(X, W) + b = sum_m conv2d(x_m, W_m) + b,
                 W = [W_1, ..., W_M]  (C_1, M * C, k, k),  W_m = W[:, m C:(m + 1) C]
    body:        an ordinary network (shared by all members)
    classifier:  z = h A^T + a,  A (M * K, F): head m = rows m K ... (m + 1) K - 1

    params = params(single) + (M - 1) * (C * C_1 * k^2 + F * K + K)

Training (`mimo_batch`, the authors' uncertainty-baselines `cifar/mimo.py`): the loader's
batch of B images is tiled b times (batch repetitions, `mimo_batch_repeat`) and shuffled,
order p; member m takes rows p_m, where the first (1 - rho) of the b B rows of p are
shuffled independently per member and the last rho are left as they are (input repetition,
`mimo_rho`): on those rows every member sees the same image. Each member's labels follow its
own rows, and the loss is the sum over members of their mean cross-entropy
(`core.metrics`, convention `sum`). The authors divide the nominal batch by b, so that a step
takes b * (B / b) = B rows (`core.train` does the same); a training image costs b networks'
FLOPs. At test every member sees the same image: X = [x, ..., x], which equals one conv
with the summed weight, conv2d(x, sum_m W_m) + b (computed so: 1/M of the first layer's FLOPs).
Inference costs one network's FLOPs (plus (M - 1) * F * K for the heads).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.checks import integer, number
from core.errors import ConfigError
from core.layers.shapes import check_int, set_conv_geometry

__all__ = ["MIMOConv2d", "MIMOLinear", "mimo_align", "mimo_batch", "mimo_rows"]

RHO = number(lo=0.0, hi=1.0, hi_open=True)  # input repetition probability
REPEAT = integer(lo=1, hi=64)  # batch repetitions


class MIMOConv2d(nn.Module):
    """The first conv: conv2d on the M inputs stacked on the channel axis (M * C_in -> C_out).

    Input (B, C_in, H, W): the same image for every member (test time, a single conv with the
    summed weight); or (M, B, C_in, H, W): member m's input x[m] (training). Output
    (B, C_out, H', W'), the `shared` layout of an ordinary network."""

    shared_input = True  # it takes the images untiled (`core.network`)

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
        m = ensemble_size
        self.conv = nn.Conv2d(
            m * in_channels, out_channels, self.kernel_size, self.stride, self.padding, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, c = self.ensemble_size, self.in_channels
        if x.dim() == 4 and x.shape[1] == c:  # one image for all members: sum_m W_m
            w = self.conv.weight
            w = w.view(w.shape[0], m, c, *w.shape[2:]).sum(1)
            return F.conv2d(x, w, self.conv.bias, self.stride, self.padding)
        if x.dim() == 5 and x.shape[0] == m and x.shape[2] == c:
            b, rest = x.shape[1], x.shape[3:]
            # (M, B, C, H, W) -> (B, M, C, H, W) -> (B, M * C, H, W): member m in block m
            return self.conv(x.transpose(0, 1).reshape(b, m * c, *rest))
        raise ConfigError(
            f"MIMOConv2d: expected images (B, {c}, H, W) or one input per member "
            f"({m}, B, {c}, H, W), got shape {tuple(x.shape)}"
        )

    def extra_repr(self) -> str:
        return (
            f"{self.ensemble_size} x {self.in_channels}->{self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        )


class MIMOLinear(nn.Module):
    """The M heads: (B, F) -> (B, M * K), head m's logits in block m (channel-stacked)."""

    shared_input = True  # it reads the one body's features untiled

    def __init__(self, in_features: int, out_features: int, ensemble_size: int) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features)
        self.out_features = check_int("out_features", out_features)
        self.ensemble_size = check_int("ensemble_size", ensemble_size)
        self.linear = nn.Linear(in_features, ensemble_size * out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def extra_repr(self) -> str:
        return f"{self.in_features}->{self.ensemble_size} x {self.out_features}"


def mimo_rows(
    batch: int, ensemble_size: int, rho: float, repeat: int, generator=None
) -> torch.Tensor:
    """The rows each member trains on: (M, repeat * batch) indices into the loader's batch.

    p = a shuffle of [0 .. batch - 1] tiled `repeat` times; member m's rows are p with its
    first n_s = floor((1 - rho) * repeat * batch) entries shuffled again, independently per
    member, and the rest (the input repetitions) left in place, equal for every member."""
    REPEAT("mimo_batch_repeat", repeat)
    RHO("mimo_rho", rho)
    n = repeat * batch
    p = torch.arange(batch).repeat(repeat)[torch.randperm(n, generator=generator)]
    n_s = int(n * (1.0 - rho))
    rows = p.expand(ensemble_size, n).clone()
    for m in range(ensemble_size):
        rows[m, :n_s] = p[:n_s][torch.randperm(n_s, generator=generator)]
    return rows


def mimo_batch(
    x: torch.Tensor, y: torch.Tensor, ensemble_size: int, rho: float, repeat: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A MIMO training batch: inputs (M, R, C, H, W), labels (M, R), rows (M, R) (`mimo_rows`,
    R = repeat * B), drawn from torch's global generator (seeded and checkpointed per trial)."""
    rows = mimo_rows(len(y), ensemble_size, rho, repeat).to(x.device)
    return x[rows], y[rows], rows


def mimo_align(logits: torch.Tensor, rows: torch.Tensor, batch: int) -> torch.Tensor:
    """Logits (M, R, K) of a MIMO batch as (M, B, K) in the loader's order: member m's logits
    of one of its `repeat` passes over image i (every image is in every member's rows)."""
    m, n = rows.shape
    pos = torch.empty(m, batch, dtype=torch.long, device=rows.device)
    pos.scatter_(1, rows, torch.arange(n, device=rows.device).expand(m, n))
    return logits.gather(1, pos.unsqueeze(-1).expand(m, batch, logits.shape[-1]))
