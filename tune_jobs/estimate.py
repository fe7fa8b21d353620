"""What a study will cost, printed before any trial runs.

Training FLOPs: trials x epochs x training images x training FLOPs per image (core.cost,
counted once per distinct model). Time: a few training steps of the most expensive model,
timed with a trial's resources (so on the device a trial gets; `tune_jobs.alone.run_alone_with`
says where), the other models scaled by their FLOPs, evaluation added as forward passes (a
third of a training step per image), divided by the trials the cluster runs at once. It is an
estimate: ASHA stops trials earlier, early stopping too, and concurrent trials slow each other
on a shared node.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.config import TrialConfig
from core.cost import COST_FIELDS, config_flops_per_image
from core.data import DataBundle
from core.train import time_train_steps
from tune_jobs.options import JobOptions
from tune_jobs.preflight import NODE_TYPE, trials_per_node
from tune_jobs.study import Study, grid_configs, uses_asha

WARMUP, STEPS = 2, 5  # training steps timed before the study (after warm-up)
EVAL_SHARE = 1 / 3  # a forward pass costs about a third of a training step per image


@dataclass(frozen=True)
class Estimate:
    trials: int
    epochs: float  # mean epochs per trial (planned)
    train_images: int  # per epoch, of the largest subset
    flops: float  # training FLOPs of the whole study
    step_s: float  # seconds per training step of the timed model
    timed: str  # which model was timed, with what
    concurrency: int
    seconds: float  # wall-time estimate

    def lines(self, asha: bool) -> list[str]:
        bound = "at most " if asha else ""
        return [
            f"cost: {self.trials} trial(s) x {self.epochs:g} epoch(s) x "
            f"{self.train_images:,} training images: {bound}{self.flops:.3g} training FLOPs "
            "(FLOPs per image counted with torch's flop counter)",
            f"estimate: {self.step_s:.3g} s per training step of {self.timed}; "
            f"{self.concurrency} trial(s) at once: {bound}about {duration(self.seconds)}"
            + (" (ASHA stops weak trials earlier)" if asha else ""),
        ]


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def study_configs(study: Study) -> list[TrialConfig]:
    """One config per trial (a search: its fixed part, num_samples times)."""
    cells = [TrialConfig.from_dict(c) for c in grid_configs(study.space)]
    return [c for c in cells for _ in range(study.num_samples)]


def split_sizes(cfg: TrialConfig, data: DataBundle) -> tuple[int, int]:
    """(training images, evaluation images: test + validation) of one epoch of `cfg`."""
    train = min(cfg.train_subset or data.num_train, data.num_train)
    val = int(round(train * cfg.val_fraction))
    test = min(cfg.test_subset or data.num_test, data.num_test)
    return train - val, test + val


def concurrency(
    trials: int, cpus: float, gpus: float, nodes: Mapping[str, dict], most: int | None
) -> int:
    """Trials that can run at once on the live nodes (node types not launched yet: none)."""
    slots = 0
    for name, r in nodes.items():
        if name.startswith(NODE_TYPE):
            continue
        k = trials_per_node(r, cpus, gpus)
        slots += trials if k is None else max(k, 0)
    return max(1, min(trials, slots or 1, most or trials))


def estimate(
    study: Study,
    opts: JobOptions,
    data: DataBundle,
    gpus_per_trial: float,
    nodes: Mapping[str, dict],
    run_alone: Callable[..., Any] | None = None,
) -> Estimate:
    configs = study_configs(study)
    shape = tuple(data.train_x.shape[1:])
    flops: dict[tuple, float] = {}
    for cfg in configs:
        key = tuple(getattr(cfg, f) for f in COST_FIELDS)
        if key not in flops:
            flops[key] = config_flops_per_image(cfg, data.num_classes, shape)
    keyed = [(cfg, flops[tuple(getattr(cfg, f) for f in COST_FIELDS)]) for cfg in configs]
    top, top_flops = max(keyed, key=lambda kv: kv[1])
    timed = (run_alone or (lambda fn, *a: fn(*a)))(time_train_steps, top, data, STEPS, WARMUP)
    step_s = 1.0 / timed["calib_batches_per_s"]
    total_flops, seconds = 0.0, 0.0
    for cfg, f in keyed:
        train, evaluated = split_sizes(cfg, data)
        total_flops += cfg.epochs * train * f
        steps = math.ceil(train / cfg.batch_size)
        per_step = step_s * f / top_flops
        seconds += cfg.epochs * per_step * (steps + EVAL_SHARE * evaluated / cfg.batch_size)
    at_once = concurrency(
        len(configs), opts.cpus_per_trial, gpus_per_trial, nodes, opts.max_concurrent
    )
    device = "GPU" if gpus_per_trial > 0 else "CPU"
    what = (
        f"{top.arch} {top.ensemble} x{top.ensemble_size} (batch {top.batch_size}; "
        f"timed: {WARMUP} + {STEPS} steps, {opts.cpus_per_trial:g} CPU"
        + (f", {gpus_per_trial:g} GPU" if gpus_per_trial > 0 else "")
        + f", on a trial's {device})"
    )
    return Estimate(
        trials=len(configs),
        epochs=sum(c.epochs for c in configs) / len(configs),
        train_images=max(split_sizes(c, data)[0] for c in configs),
        flops=total_flops,
        step_s=step_s,
        timed=what,
        concurrency=at_once,
        seconds=seconds / at_once,
    )


# The most trials one Ray Tune experiment should hold: Tune rewrites every trial's state at each
# experiment snapshot, and with checkpoint retention each trial forces one, so its driver's work
# grows with the square of the trials it holds (2,000 sleeping trials: 7 minutes of Tune here;
# 10,000 in one experiment were stopped after 20 minutes at 2,320: benchmarks/README.md, "The
# driver at scale").
STEP_TRIALS = 2_000


def step_note(trials: int) -> str | None:
    """The advice for a Tune experiment of more than STEP_TRIALS trials, else None."""
    if trials <= STEP_TRIALS:
        return None
    return (
        f"note: {trials:,} trials in one Ray Tune experiment: Tune's driver work grows with the "
        "square of the trials it holds (it rewrites every trial's state as trials checkpoint); "
        f"a search runs faster in --extend steps of about {STEP_TRIALS:,} trials "
        f"(--num-samples {STEP_TRIALS}, then --extend --num-samples {2 * STEP_TRIALS}, ...; "
        "README, cluster section)"
    )


def cost_lines(
    study: Study,
    opts: JobOptions,
    data: DataBundle,
    gpus_per_trial: float,
    nodes: Mapping[str, dict],
    run_alone: Callable[..., Any] | None = None,
) -> list[str]:
    """The lines a study prints before its trials: cost, time, and at full scale without a
    GPU, that it is one and the CPU-sized command."""
    est = estimate(study, opts, data, gpus_per_trial, nodes, run_alone)
    lines = est.lines(uses_asha(study, opts))
    if opts.preset == "full" and gpus_per_trial == 0:
        lines.append(
            f"note: this is the full-scale study (--preset full: the student study's VGG11 on "
            f"the whole training set) on CPUs only, about {duration(est.seconds)}; it is made "
            f"for GPU clusters. The CPU-sized study: python tune_jobs/{study.name}.py "
            "--preset cpu (or --smoke for a two-minute pipeline check). Ctrl-C stops it; "
            "--resume continues it."
        )
    note = step_note(study.trial_count)
    if note:
        lines.append(note)
    return lines
