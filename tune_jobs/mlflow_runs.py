"""Optional MLflow runs of a study (`--mlflow-uri`): one run per trial.

A module of its own, imported only when a study asks for MLflow: importing MLflow costs about a
second of every job's start (measured on 2 cores, 2026-12-03), and most studies do not use it.
"""

from __future__ import annotations

import os
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from core.config import TrialConfig
from tune_jobs.watch import step_of, watched


class MLflowCallback(MLflowLoggerCallback):
    """Ray's MLflow logger with the project's names: one run per trial (named after it, tagged
    with the study), its params every TrialConfig field (Ray's own logs the raw config: bundles
    as `cell/optimizer`, paths of the driver), its metrics the WATCHED ones stepped by epoch."""

    def log_trial_start(self, trial: Any) -> None:
        if trial not in self._trial_runs:
            tags = {**self.tags, "trial_name": str(trial)}
            run = self.mlflow_util.start_run(tags=tags, run_name=str(trial))
            self._trial_runs[trial] = run.info.run_id
        fields = TrialConfig.from_dict(trial.config).to_dict()
        fields.pop("extra")
        self.mlflow_util.log_params(run_id=self._trial_runs[trial], params_to_log=fields)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        self.mlflow_util.log_metrics(
            run_id=self._trial_runs[trial], metrics_to_log=watched(result), step=step_of(result)
        )


def mlflow_callback(uri: str, experiment: str, study: str) -> MLflowCallback:
    """The MLflow logger of `--mlflow-uri`. A file:// store is in maintenance mode from MLflow
    3.7 on and refused unless opted in: the user asked for one, so the job opts in (an explicit
    MLFLOW_ALLOW_FILE_STORE in the environment wins)."""
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLflowCallback(tracking_uri=uri, experiment_name=experiment, tags={"study": study})
