"""tune_jobs.estimate: a study's cost and time, printed before any trial runs."""

from __future__ import annotations

import math

import pytest

from core.config import TrialConfig
from core.cost import train_flops_per_image
from core.models import model_for_config
from tune_jobs import alpha_gamma, sharing
from tune_jobs.estimate import (
    STEP_TRIALS,
    concurrency,
    cost_lines,
    duration,
    estimate,
    split_sizes,
    step_note,
)
from tune_jobs.options import JobOptions
from tune_jobs.study import grid_configs

LOCAL = {"127.0.0.1:abcd": {"CPU": 2.0, "GPU": 0.0}}
SMALL = ["train_subset=300", "test_subset=100"]


def test_the_flops_are_trials_epochs_images_and_flops_per_image(cifar10):
    opts = JobOptions(smoke=True, overrides=SMALL, epochs=2)
    study = alpha_gamma.make_study(opts)
    est = estimate(study, opts, cifar10, 0.0, LOCAL)
    cfgs = [TrialConfig.from_dict(c) for c in grid_configs(study.space)]
    per_image = train_flops_per_image(model_for_config(cfgs[0], 10, 3), cfgs[0], (3, 32, 32), 10)
    train, evaluated = split_sizes(cfgs[0], cifar10)
    assert (train, evaluated) == (270, 130)  # 10% of 300 held out for validation
    assert est.trials == 4 and est.epochs == 2 and est.concurrency == 2
    assert est.flops == pytest.approx(4 * 2 * 270 * per_image)
    assert est.step_s > 0
    steps = math.ceil(270 / 128) + 130 / 128 / 3
    assert est.seconds == pytest.approx(4 * 2 * est.step_s * steps / 2)


def test_models_of_different_cost_are_scaled_by_their_flops(cifar10):
    opts = JobOptions(smoke=True, overrides=SMALL, epochs=1)
    study = sharing.make_study(opts)
    est = estimate(study, opts, cifar10, 0.0, LOCAL)
    cfgs = [TrialConfig.from_dict(c) for c in grid_configs(study.space)]
    each = [train_flops_per_image(model_for_config(c, 10, 3), c, (3, 32, 32), 10) for c in cfgs]
    # tying slow weights within the network (early/none) costs what none/none does; sharing
    # within the ensemble saves compute
    assert len(set(each)) == 3
    assert est.trials == 4 and est.flops == pytest.approx(270 * sum(each))
    assert "simple_cnn batch x8" in est.timed  # the most expensive regime is the one timed
    steps = math.ceil(270 / 128) + 130 / 128 / 3
    assert est.seconds == pytest.approx(est.step_s * steps * sum(each) / max(each) / 2)


def test_concurrency_follows_cpus_gpus_and_the_limit():
    nodes = {"a": {"CPU": 8.0, "GPU": 2.0}, "b": {"CPU": 4.0, "GPU": 0.0}}
    assert concurrency(100, 1.0, 0.0, nodes, None) == 12
    assert concurrency(100, 2.0, 0.5, nodes, None) == 4  # GPUs limit node a; b has none
    assert concurrency(100, 1.0, 0.0, nodes, 3) == 3
    assert concurrency(5, 1.0, 0.0, nodes, None) == 5
    assert concurrency(5, 1.0, 0.0, {"node type gpu": {"CPU": 48.0, "GPU": 4.0}}, None) == 1


def test_full_scale_on_cpus_says_so_and_names_the_cpu_preset(cifar10):
    opts = JobOptions(overrides=["train_subset=300", "test_subset=100"], epochs=1)
    study = alpha_gamma.make_study(opts)
    lines = cost_lines(study, opts, cifar10, 0.0, LOCAL)
    assert lines[0].startswith("cost: 81 trial(s) x 1 epoch(s) x 270 training images")
    assert "at most" in lines[0]  # ASHA
    assert "vgg11 batch x4" in lines[1] and "2 trial(s) at once" in lines[1]
    assert "python tune_jobs/alpha_gamma.py --preset cpu" in lines[2]
    smoke = JobOptions(smoke=True, overrides=SMALL, epochs=1)
    assert len(cost_lines(alpha_gamma.make_study(smoke), smoke, cifar10, 0.0, LOCAL)) == 2


def test_durations_read_naturally():
    assert [duration(s) for s in (42, 600, 7200, 3 * 86400)] == [
        "42 s",
        "10 min",
        "2.0 h",
        "3.0 days",
    ]


def test_on_a_local_cpu_the_timing_runs_in_the_driver_and_leaves_its_state(cifar10):
    """A local Ray with CPU trials: the driver's CPU is a trial's, so run_alone times there,
    with the trial's threads, and the driver's thread count and random streams are as before
    (an Optuna sampler may draw from them next)."""
    import random

    import numpy as np
    import torch

    from core.train import time_train_steps
    from tune_jobs.alone import run_alone_with, run_here

    assert run_alone_with(1, 0.0, None) is run_here
    assert run_alone_with(1, 0.0, "auto") is not run_here  # a cluster: a Ray task on a node
    assert run_alone_with(1, 1.0, None) is not run_here  # GPUs: a task that gets its GPU
    threads = max(2, torch.get_num_threads())
    torch.set_num_threads(threads)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    expected = random.random(), np.random.rand(), torch.rand(1).item()
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    seen = []
    cfg = TrialConfig(train_subset=300, test_subset=100, num_threads=1, seed=3)

    def timed(c, data):
        out = time_train_steps(c, data, 2, 1)
        seen.append(torch.get_num_threads())  # what the steps ran with
        return out

    out = run_here(timed, cfg, cifar10)
    assert out["calib_batches_per_s"] > 0 and seen == [1]
    assert torch.get_num_threads() == threads
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_a_tune_experiment_of_thousands_of_trials_is_told_to_run_in_steps():
    assert step_note(STEP_TRIALS) is None
    assert step_note(10_000) == (
        "note: 10,000 trials in one Ray Tune experiment: Tune's driver work grows with the "
        "square of the trials it holds (it rewrites every trial's state as trials checkpoint); "
        "a search runs faster in --extend steps of about 2,000 trials (--num-samples 2000, then "
        "--extend --num-samples 4000, ...; README, cluster section)"
    )
