"""The guards of `--resume` and `--extend` that need Ray (or read the experiment folder
through pyarrow): an experiment to resume or extend (and none to overwrite without either), the
saved study's options (`tune_jobs.resume.check_resume`), a finished study with nothing to
resume, a study to extend that has finished (`tune_jobs.extend.plan_extension` plans the
extension), what a killed run left, the saved tables an extension keeps, and the earlier runs'
provenance and extensions that the record keeps. The runner calls them; the comparison of the
record itself is `tune_jobs.resume`'s and `tune_jobs.extend`'s, which need no Ray."""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
from ray import tune
from ray.tune import ExperimentAnalysis

from core.columns import (
    EXTENSIONS,
    HISTORY_FILE,
    PROVENANCE,
    PROVENANCE_EARLIER,
    RESULTS_FILE,
    RESUME_COMMAND,
    STATE_FINISHED,
    STATUS,
    STATUS_TERMINATED,
    STUDY_FILE,
    STUDY_STATE,
)
from core.errors import refusal
from tune_jobs.errors import JobError, NothingToResume
from tune_jobs.extend import Extension, plan_extension
from tune_jobs.options import JobOptions
from tune_jobs.preflight import is_uri
from tune_jobs.resume import check_resume
from tune_jobs.study import Study


def check_experiment_state(exp_path: str, opts: JobOptions) -> None:
    """Refuse to overwrite an experiment without `--resume` (or `--extend`), or to resume or
    extend a missing one."""
    restorable = tune.Tuner.can_restore(exp_path)
    exists = restorable or (
        not is_uri(exp_path) and Path(exp_path).exists() and any(Path(exp_path).iterdir())
    )
    if (opts.resume or opts.extend) and not restorable:
        flag = "--resume" if opts.resume else "--extend"
        raise JobError(
            refusal(
                "--name",
                opts.experiment_name,
                "the name of an experiment in --storage-path (check --name and --storage-path)",
                why=f"{flag}: no experiment to {flag[2:]} at {exp_path}",
            )
        )
    if exists and not (opts.resume or opts.extend):
        raise JobError(
            refusal(
                "--name",
                opts.experiment_name,
                "another --name to start afresh",
                why=f"experiment {exp_path} already exists; pass --resume to continue it "
                "(--extend to add trials to it once finished)",
            )
        )


def clear_killed_run(exp_path: str, timeout_s: float = 60.0, poll_s: float = 0.2) -> None:
    """Before `--resume`: nothing left of a killed run may write into the resumed study.

    1. The trial actors of a driver that died (SIGKILL, a lost machine) run on until Ray's
       GCS has noticed the death and stopped them, and until then they may write checkpoints
       into the trial folders. Wait for every live actor of a dead job to be gone (they are
       the only writers a killed run leaves; at most `timeout_s`, then refuse).
    2. Tune writes each trial's result.json and progress.csv into a staging folder in the
       driver's Ray session and copies it to the storage path now and then. A restored run
       reuses that folder (Tune names it after the first run's start time), so on a cluster
       that outlived the killed driver it still holds reports that driver got but never
       copied; the restored run would copy them into the experiment folder before restoring
       its trials' files from there, and a report of the killed run would follow the
       snapshot's last epoch. Remove it: the storage path is the one record of the killed run.
    """
    gcs = ray._private.state.state  # the GCS tables; ray.util.state needs the dashboard
    deadline = time.monotonic() + timeout_s
    waiting = False
    while True:
        dead_jobs = {j["JobID"] for j in gcs.job_table() if j["IsDead"]}
        alive = gcs.actor_table(None, actor_state_name="ALIVE").values()
        left = sorted(
            {a["JobID"] for a in alive if a["JobID"] in dead_jobs and not a["IsDetached"]}
        )
        if not left:
            break
        if time.monotonic() > deadline:
            raise JobError(
                f"--resume: actors of the ended Ray job(s) {', '.join(left)} are still alive "
                f"after {timeout_s:.0f} s and may write into {exp_path}; stop them (`ray stop` "
                "on their node) and run --resume again"
            )
        if not waiting:
            print(f"--resume: waiting for Ray to stop the actors of ended job(s) {', '.join(left)}")
            waiting = True
        time.sleep(poll_s)
    if not has_experiment_state(exp_path):  # stopped before Tune saved any: nothing staged
        return
    for staging in {t.local_experiment_path for t in ExperimentAnalysis(exp_path).trials}:
        shutil.rmtree(staging, ignore_errors=True)


def has_experiment_state(exp_path: str) -> bool:
    """Tune has saved the experiment's state (experiment_state-<start>.json) at `exp_path`."""
    if not is_uri(exp_path):
        return any(Path(exp_path).glob("experiment_state-*.json"))
    fs, remote = pafs.FileSystem.from_uri(exp_path)
    found = fs.get_file_info(pafs.FileSelector(remote, allow_not_found=True))
    return any(Path(f.path).name.startswith("experiment_state-") for f in found)


def read_experiment_file(exp_path: str, name: str) -> bytes | None:
    """A file of the experiment folder (local or s3:// / gs://), None when absent."""
    if not is_uri(exp_path):
        path = Path(exp_path) / name
        return path.read_bytes() if path.is_file() else None
    fs, remote = pafs.FileSystem.from_uri(exp_path)
    if fs.get_file_info(f"{remote}/{name}").type != pafs.FileType.File:
        return None
    with fs.open_input_stream(f"{remote}/{name}") as f:
        return f.read()


def saved_record(exp_path: str) -> dict[str, Any]:
    """The experiment's study.json, {} when absent."""
    raw = read_experiment_file(exp_path, STUDY_FILE)
    return json.loads(raw) if raw else {}


def saved_statuses(exp_path: str) -> list[str] | None:
    """The status of every trial in the experiment's results.parquet, None when absent."""
    results = read_experiment_file(exp_path, RESULTS_FILE)
    if results is None:
        return None
    return pq.read_table(pa.BufferReader(results), columns=[STATUS]).column(STATUS).to_pylist()


def saved_tables(exp_path: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The experiment's results.parquet and history.parquet as saved, None when absent: the
    rows a run that does not rerun their trials (an extension) keeps."""
    results = read_experiment_file(exp_path, RESULTS_FILE)
    history = read_experiment_file(exp_path, HISTORY_FILE)
    if results is None or history is None:
        return None
    return pd.read_parquet(io.BytesIO(results)), pd.read_parquet(io.BytesIO(history))


def earlier_provenance(exp_path: str, opts: JobOptions) -> dict[str, Any]:
    """On --resume or --extend: {PROVENANCE_EARLIER: the saved record's earlier runs and its
    own last run}, so that the record keeps what made every run of the study, and the
    extensions the record lists (EXTENSIONS); {} for a new study."""
    if not (opts.resume or opts.extend):
        return {}
    saved = saved_record(exp_path)
    earlier = list(saved.get(PROVENANCE_EARLIER, []))
    if PROVENANCE in saved:
        earlier.append(saved[PROVENANCE])
    out: dict[str, Any] = {PROVENANCE_EARLIER: earlier} if earlier else {}
    if saved.get(EXTENSIONS):
        out[EXTENSIONS] = list(saved[EXTENSIONS])
    return out


def check_extend_state(exp_path: str, study: Study, opts: JobOptions) -> Extension | None:
    """Before Ray starts, on --extend: the study must have finished with every trial
    terminated (else: resume it first, with its resume command), and the extension asked
    must be one (`tune_jobs.extend.plan_extension`); returns it, None without --extend."""
    if not opts.extend:
        return None
    saved = saved_record(exp_path)
    state = saved.get(STUDY_STATE, STATE_FINISHED)
    statuses = saved_statuses(exp_path)
    command = saved.get(RESUME_COMMAND, "the study script's --resume")
    why = None
    if state != STATE_FINISHED or statuses is None:
        shown = state if state != STATE_FINISHED else f"unfinished (no {RESULTS_FILE})"
        why = f"study {opts.experiment_name} is {shown}"
    elif any(s != STATUS_TERMINATED for s in statuses):
        errored = sum(s != STATUS_TERMINATED for s in statuses)
        why = f"{errored} of {len(statuses)} trial(s) of study {opts.experiment_name} errored"
    if why is not None:
        allowed = f"--extend of a finished study; resume it first: {command}"
        raise JobError(refusal("--extend", True, allowed, why=why))
    return plan_extension(saved, study, opts)


def check_resume_state(exp_path: str, study: Study, opts: JobOptions) -> None:
    """Before Ray starts, on --resume: the options must be the saved study's (JobError naming
    each difference), and a study that finished with every trial terminated has nothing to
    resume (NothingToResume). A study with errored trials is resumed: they are retried."""
    if not opts.resume:
        return
    saved = saved_record(exp_path)
    check_resume(saved, study, opts)
    if saved.get(STUDY_STATE, STATE_FINISHED) != STATE_FINISHED:
        return
    statuses = saved_statuses(exp_path)
    if statuses is not None and all(s == STATUS_TERMINATED for s in statuses):
        raise NothingToResume(
            f"nothing to resume: study {opts.experiment_name} finished; "
            f"results: {exp_path}/{RESULTS_FILE}"
        )
