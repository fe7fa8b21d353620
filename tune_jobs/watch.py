"""What a researcher watches while a study runs: TensorBoard curves and hyperparameters of every
trial, Ray's progress table, and the lines the job prints at start.

Every name shown is the project's (`core.columns`: val_acc, test_acc, train_loss, ...) and every
hyperparameter is a config field (`TrialConfig`): a bundle that a grid sweeps (the optimizers
study's `cell`, the sharing study's `sharing`) is shown as the fields it sets.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune import CLIReporter
from ray.tune.logger import TBXLoggerCallback
from ray.tune.utils import flatten_dict

from core.columns import (
    BATCHES_PER_S,
    CORRUPT_CELLS,
    EPOCH,
    REPORT_KEYS,
    TEST_ACC,
    TEST_LOSS,
    TRAIN_LOSS,
    VAL_ACC,
    VAL_LOSS,
)
from core.config import TrialConfig

# The curves in TensorBoard and MLflow: every key a trial reports each epoch (core.columns),
# under its own name, except the 150 corruption x severity cells (one point each, at the end of
# a trial: 150 charts of one point would bury the curves; history.parquet and the report have
# them) and Ray's bookkeeping (time_this_iter_s, done, ...).
WATCHED = tuple(k for k in REPORT_KEYS if k not in CORRUPT_CELLS)
# The metrics TensorBoard's HParams table shows next to each trial's hyperparameters.
HPARAM_METRICS = (VAL_ACC, VAL_LOSS, TEST_ACC, TEST_LOSS, TRAIN_LOSS)
# Ray's progress table: these metric columns (the selection metric, val_acc, among them)...
PROGRESS_METRICS = {
    EPOCH: "epoch",
    TRAIN_LOSS: "train loss",
    VAL_ACC: "val acc",  # what selection reads
    TEST_ACC: "test acc",
    TEST_LOSS: "test loss",
    BATCHES_PER_S: "batch/s",
}
# ... at most this often, and only when a trial reported or changed status: a one-minute smoke
# study shows its epochs going by, a day-long study does not print a table every 5 s for nothing.
PROGRESS_EVERY_S = 5.0


def watched(result: Mapping[str, Any]) -> dict[str, float]:
    """The WATCHED metrics of one report that have a value (NaN: not measured this epoch)."""
    out = {}
    for key in WATCHED:
        value = result.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            out[key] = float(value)
    return out


def hparams(trial: Any, fields: Sequence[str]) -> dict[str, Any]:
    """The trial's swept config fields (`tune_jobs.study.swept_fields`) with their values, read
    from its validated config; a search (no grid) names its fields by the suggested parameters.
    None (a fast-weight init switched off) is left out: TensorBoard has no missing value."""
    cfg = TrialConfig.from_dict(trial.config)
    if not fields:
        names = {f.name for f in dataclasses.fields(TrialConfig)}
        paths = flatten_dict(dict(trial.evaluated_params or {}), delimiter="/")
        fields = [p.rsplit("/", 1)[-1] for p in paths if p.rsplit("/", 1)[-1] in names]
    values = {f: getattr(cfg, f) for f in dict.fromkeys(fields)}
    return {f: v for f, v in values.items() if v is not None}


def step_of(result: Mapping[str, Any]) -> int:
    """The x axis of a curve: the trial's epoch (a resumed trial continues its own count)."""
    return int(result.get(EPOCH) or result["training_iteration"])


class TensorBoardCallback(TBXLoggerCallback):
    """Ray's TensorBoard logger with the project's names: one event file per trial folder,
    scalars tagged `val_acc`, `test_acc`, ... (Ray's own tags them `ray/tune/val_acc` and adds
    its bookkeeping), stepped by epoch, and the trial's hyperparameters written when it starts
    (Ray writes them at its end only, and a bundle as `cell/optimizer`), so that TensorBoard's
    HParams tab lists running trials too. Being a TBXLoggerCallback, it replaces Ray's default."""

    def __init__(self, fields: Sequence[str]):
        super().__init__()
        self.fields = tuple(fields)

    def log_trial_start(self, trial: Any) -> None:
        super().log_trial_start(trial)  # opens the trial's writer
        from tensorboardX.summary import hparams as hparams_summaries

        experiment, session_start, _ = hparams_summaries(
            hparam_dict=hparams(trial, self.fields),
            metric_dict=dict.fromkeys(HPARAM_METRICS, 0.0),  # names only: values are the scalars
        )
        writer = self._trial_writer[trial].file_writer
        writer.add_summary(experiment)
        writer.add_summary(session_start)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        if trial not in self._trial_writer:
            self.log_trial_start(trial)
        writer = self._trial_writer[trial]
        step = step_of(result)
        for key, value in watched(result).items():
            writer.add_scalar(key, value, global_step=step)
        writer.flush()

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        writer = self._trial_writer.pop(trial, None)
        self._trial_result.pop(trial, None)
        if writer is None:
            return
        writer.file_writer.add_summary(session_end(failed))
        writer.close()


def session_end(failed: bool) -> Any:
    """TensorBoard's hparams session-end record: the trial's status (tensorboardX's own helper
    always writes success)."""
    from tensorboardX.proto.api_pb2 import Status
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData, SessionEndInfo
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

    status = Status.Value("STATUS_FAILURE" if failed else "STATUS_SUCCESS")
    content = HParamsPluginData(session_end_info=SessionEndInfo(status=status), version=0)
    plugin = SummaryMetadata.PluginData(plugin_name="hparams", content=content.SerializeToString())
    metadata = SummaryMetadata(plugin_data=plugin)
    return Summary(value=[Summary.Value(tag="_hparams_/session_end_info", metadata=metadata)])


class ProgressTable(CLIReporter):
    """Ray's progress table, printed every PROGRESS_EVERY_S when something changed (a report,
    a trial's status) and at the end."""

    def __init__(self, parameter_columns: Mapping[str, str] | None):
        super().__init__(
            metric_columns=PROGRESS_METRICS,
            parameter_columns=dict(parameter_columns) if parameter_columns else None,
            max_report_frequency=PROGRESS_EVERY_S,
        )
        self._shown: tuple = ()

    def should_report(self, trials: list, done: bool = False) -> bool:
        if done:
            return True
        # Tune asks at every step of its loop: the clock first, as every trial's state is
        # a pass over all trials (at 2,000 trials that pass, at every step, took a quarter of
        # the driver's time: benchmarks/README.md, "The driver at scale").
        if time.time() - self._last_report_time < PROGRESS_EVERY_S:
            return False
        state = tuple((t.trial_id, t.status, t.last_result.get(EPOCH)) for t in trials)
        if state == self._shown:
            return False
        self._shown, self._last_report_time = state, time.time()
        return True


def start_lines(
    exp_path: str,
    dashboard_url: str | None,
    address: str | None,
    mlflow_uri: str | None,
    experiment: str,
) -> list[str]:
    """What the job prints once Ray has started: where the experiment is, the TensorBoard
    command that shows its trials live, where Ray's dashboard is, where MLflow logs."""
    lines = [
        f"experiment: {exp_path}",
        f"tensorboard: tensorboard --logdir {shlex.quote(exp_path)}",
    ]
    url = dashboard_url and (dashboard_url if "://" in dashboard_url else f"http://{dashboard_url}")
    if address is None:
        lines.append(
            f"ray dashboard: {url}"
            if url
            else 'ray dashboard: not running (it needs `pip install "ray[default]"`)'
        )
    else:
        on_head = f" ({url} on the head node)" if url else ""
        lines.append(
            f"ray dashboard: on the cluster's head{on_head}; from your machine: "
            "`ray dashboard cluster.yaml` forwards it to http://localhost:8265"
        )
    if mlflow_uri is not None:
        lines.append(f"mlflow: runs of experiment {experiment!r} in {mlflow_uri}")
    return lines
