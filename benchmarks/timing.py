"""The benchmarks' one timing loop: cases interleaved round by round, seconds per step.

Run as scripts (`python benchmarks/<name>.py`), the benchmarks find this module next to them
(benchmarks/ is sys.path[0]): `from timing import interleaved, median_ratio`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import torch


def time_steps(step: Callable[[], object], steps: int, device: torch.device | None = None) -> float:
    """Seconds per step, measured over `steps` steps (a CUDA device is synchronised before and
    after, so that queued work is counted)."""
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / steps


def interleaved(
    cases: Mapping[str, Callable[[], object]],
    rounds: int,
    steps: int,
    device: torch.device | None = None,
    warmup: int = 2,
) -> dict[str, list[float]]:
    """Per case, its seconds per step in each round: every case first runs `warmup` untimed
    steps, then the cases take turns, `steps` steps each per round, so that a load that
    changes during the run shifts every case alike."""
    for step in cases.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, step in cases.items():
            times[name].append(time_steps(step, steps, device))
    return times


def median_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """The median over rounds of num / den within each round."""
    return statistics.median(n / d for n, d in zip(num, den, strict=True))
