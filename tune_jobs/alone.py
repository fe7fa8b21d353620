"""Running one function with a trial's resources while nothing else of the study runs: the
cost estimate's timed steps before the Tuner starts, the sharing and methods studies'
throughput after it returned."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import ray
import torch


def run_alone_with(cpus: float, gpus: float, address: str | None) -> Callable[..., Any]:
    """`run_alone(fn, *args)`: fn with a trial's resources while nothing else of the study runs
    (before the Tuner starts, or after it returned), waited for.

    On a cluster (`--address`) or with GPUs per trial: one Ray task with the trial's CPUs and
    GPUs, so on a node and device a trial gets. On this machine with CPU trials, the device a
    trial gets is this process's CPU: fn runs here, with the trial's threads (its config's
    `num_threads`), which spares starting a worker that imports torch and receives the data
    (about 4 of a local study's first 20 s on 2 cores, 2026-12-03). The driver's random states
    and torch thread count are as before afterwards."""
    if address is None and gpus == 0:
        return run_here

    def run_alone(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return ray.get(ray.remote(num_cpus=cpus, num_gpus=gpus)(fn).remote(*args, **kwargs))

    return run_alone


def run_here(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """fn in this process, its effects on global state undone: torch's thread count and the
    random streams of Python, NumPy and torch (a search's sampler may draw from them)."""
    threads, py_state, np_state = torch.get_num_threads(), random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)
        random.setstate(py_state)
        np.random.set_state(np_state)
