"""The Ray Tune function trainable: one trial of `core.train.train`, reporting to Ray Tune and
resuming from the trial's last checkpoint."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Collection
from typing import Any

import ray
import torch
from ray import tune

from core.columns import NODE_ID
from core.config import TrialConfig
from core.data import DataBundle
from core.predictions import PredictionWriter
from core.report import tune_metrics
from core.train import train

CHECKPOINT_FILE = "state.pt"


def _ray_reporter(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
    # Ray fills in node_ip itself; several nodes can share one IP, so name the node too.
    metrics = {**tune_metrics(metrics), NODE_ID: ray.get_runtime_context().get_node_id()}

    if state is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, os.path.join(tmp, CHECKPOINT_FILE))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def load_checkpoint_state(checkpoint) -> dict[str, Any]:
    """The state saved by `core.train.train`, from a `ray.tune.Checkpoint`."""
    with checkpoint.as_directory() as d:
        return torch.load(os.path.join(d, CHECKPOINT_FILE), map_location="cpu", weights_only=False)


def trial_working_directory() -> str:
    """The trial's working directory: what Ray syncs into the trial's folder of the experiment
    at each report (the runner's SyncConfig(sync_artifacts=True)), on whichever node the trial
    runs. Not `tune.get_context().get_trial_dir()`: in Ray 2.60 that is the driver's staging
    folder for the first trial an actor runs (FunctionTrainable.setup) and the working
    directory only for the trials it runs after (reuse_actors, reset_config); the staging
    folder of a worker node is never synced. A resumed trial starts with an empty working
    directory: the file synced before stays in the experiment folder until replaced."""
    return tune.get_context().get_storage().trial_working_directory


def ray_trainable(
    config: dict[str, Any],
    data: DataBundle | None = None,
    robustness_epochs: Collection[int] = (),
) -> None:
    """Ray Tune function trainable: one trial from a config dict, resumable from checkpoints.

    `data` is the full dataset loaded once on the driver and shared with every trial through
    `tune.with_parameters`; each trial applies its own subset/validation split.
    `robustness_epochs`: the study's epochs at which robustness is also measured (ASHA's rungs:
    `tune_jobs.study.robustness_epochs`), the same for every trial.
    """
    # Ray Train logs "Checkpoint successfully created at: ..." at INFO for every epoch's
    # checkpoint, in this (the trial's) process: its logger at WARNING keeps its warnings only.
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    cfg = TrialConfig.from_dict(config)
    checkpoint = tune.get_checkpoint()
    resume_state = load_checkpoint_state(checkpoint) if checkpoint else None
    context = tune.get_context()
    predictions = PredictionWriter(trial_working_directory(), context.get_trial_id())
    train(
        cfg,
        data=data,
        reporter=_ray_reporter,
        resume_state=resume_state,
        robustness_epochs=robustness_epochs,
        predictions=predictions,
    )
