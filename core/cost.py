"""What a trial costs: training FLOPs per image (counted once), and peak memory.

`train_flops_per_image` counts one forward and backward pass of the trial's model with
`torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products, each
multiply-add counted as 2 FLOPs; norms, activations and the optimizer's elementwise update are
not counted, as is usual), on a copy of the model so that the trial's weights, gradients and
running statistics are untouched. It counts what the model really computes: an early region
shared within the ensemble runs once on the untiled batch, so it costs 1/M of a tiled one.
IVON's extra weight samples per step multiply it (`ivon_train_samples`), and so do MIMO's
batch repetitions (`mimo_batch_repeat`: a loader image is that many rows of a step).

`peak_memory_mb`: on CUDA the peak of allocated tensor memory since the last reset
(`torch.cuda.max_memory_allocated`); on CPU the process's peak resident set size (ru_maxrss:
the whole worker process, Python and the data included, never reset).
"""

from __future__ import annotations

import copy
import resource
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from core.config import TrialConfig
from core.layers import mimo_batch
from core.metrics import ensemble_loss
from core.models import model_for_config

FLOP_BATCH = 2  # images counted; FLOPs are linear in the batch, so 2 tell the rate


def _conv_backward_flop(
    grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
    _output_padding, _groups, output_mask, out_shape=None, **kwargs,
) -> int:  # fmt: skip
    """convolution_backward: the input gradient and the weight gradient each cost the forward
    convolution's FLOPs. torch's own formula (2.14) ignores `groups` and counts a grouped
    convolution's backward as if ungrouped (M times too much for a deep ensemble's M groups:
    tests/core/test_cost.py)."""
    fwd = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return fwd * (int(output_mask[0]) + int(output_mask[1]))


CUSTOM_FLOPS = {torch.ops.aten.convolution_backward: _conv_backward_flop}


def train_flops_per_image(
    model: torch.nn.Module, cfg: TrialConfig, image_shape: tuple[int, ...], num_classes: int
) -> float:
    """Training FLOPs per image of `model` (forward + backward, times IVON's samples)."""
    probe = copy.deepcopy(model).to("cpu").train()
    x = torch.zeros(FLOP_BATCH, *image_shape)
    y = torch.arange(FLOP_BATCH) % num_classes
    if cfg.ensemble == "mimo":  # the rows a step trains on: mimo_batch_repeat per image
        with torch.random.fork_rng(devices=[]):  # the trial's random stream stays untouched
            x, y, _ = mimo_batch(x, y, cfg.ensemble_size, cfg.mimo_rho, cfg.mimo_batch_repeat)
    with FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOPS) as counter:
        ensemble_loss(probe(x), y, cfg.ensemble).backward()
    samples = cfg.ivon_train_samples if cfg.optimizer == "ivon" else 1
    return counter.get_total_flops() * samples / FLOP_BATCH


# The config fields that change what one training step computes (and so its FLOPs and time).
COST_FIELDS = (
    "arch",
    "ensemble",
    "ensemble_size",
    "sharing_network",
    "sharing_ensemble",
    "norm",
    "packed_width",
    "packed_groups",
    "mimo_batch_repeat",
    "optimizer",
    "ivon_train_samples",
    "batch_size",
)


def config_flops_per_image(
    cfg: TrialConfig, num_classes: int, image_shape: tuple[int, ...] = (3, 32, 32)
) -> float:
    """train_flops_per_image of the model `cfg` builds (on the CPU, for counting only)."""
    model = model_for_config(cfg, num_classes, in_channels=image_shape[0])
    return train_flops_per_image(model, cfg, image_shape, num_classes)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: CUDA tensors since the last reset, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, else KiB
