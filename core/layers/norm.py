"""Ensemble normalisation: BatchNorm with per-member affine parameters `weight` / `bias`
(M, C), and statistics shared by all members (`BEBatchNorm2d`) or per member
(`MemberBatchNorm2d`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.layers.shapes import check_int, check_member_list, like_activation, split_members

__all__ = ["BEBatchNorm2d", "MemberBatchNorm2d"]


class _EnsembleNorm(nn.Module):
    """Running statistics over `num_stats` channels plus per-member affine `weight`/`bias`
    (M, C). Train/eval behaviour and the momentum update are those of nn.BatchNorm2d."""

    def __init__(
        self, num_features: int, ensemble_size: int, num_stats: int, eps: float, momentum: float
    ) -> None:
        super().__init__()
        self.num_features = check_int("num_features", num_features)
        self.ensemble_size = check_int("ensemble_size", ensemble_size)
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
        b = split_members(x, m, type(self).__name__)
        y = self._batch_norm(x)  # shared statistics, no affine
        y = y.view(m, b, *y.shape[1:])  # (M, B, C, H, W)
        w = like_activation(self.weight, y).view(m, 1, -1, 1, 1)
        bias = like_activation(self.bias, y).view(m, 1, -1, 1, 1)
        return torch.addcmul(bias, y, w).view(x.shape)


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
        b = split_members(x, m, type(self).__name__)
        rest = x.shape[2:]
        # (M * B, C, ...) -> (M, B, C, ...) -> (B, M, C, ...) -> (B, M * C, ...)
        xs = x.reshape(m, b, c, *rest).transpose(0, 1).reshape(b, m * c, *rest)
        y = self._batch_norm(xs, w, bias)
        # and back: (B, M * C, ...) -> (B, M, C, ...) -> (M, B, C, ...) -> (M * B, C, ...)
        return y.view(b, m, c, *rest).transpose(0, 1).reshape(x.shape)

    def _member_list(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        m, c = self.ensemble_size, self.num_features
        check_member_list(xs, m, c, type(self).__name__)
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
