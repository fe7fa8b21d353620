"""Running and resuming a study on Ray Tune, and writing its files when it ends.

`run_study` starts Ray (locally, or joins `--address`), runs the Tuner (or restores it with
`--resume`), and writes `study.json`, `results.parquet` and `history.parquet` into the
experiment folder; with `s3://` or `gs://` storage they are written locally and uploaded.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pyarrow.fs as pafs
import ray
from ray import tune
from ray.tune import ExperimentAnalysis
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter

from core.config import TrialConfig
from core.data import load_dataset
from core.errors import refusal
from core.trainable import ray_trainable
from tune_jobs.options import (
    JobError,
    JobOptions,
    Study,
    StudyInterrupted,
    grid_configs,
    is_uri,
    swept_keys,
    uses_asha,
    write_study_json,
)
from tune_jobs.resources import check_gpus, check_storage_reachable, cluster_gpus, local_gpus
from tune_jobs.results import write_results

# What a researcher watches while a study runs: Ray Tune's table gets these columns.
PROGRESS_METRICS = {
    "epoch": "epoch",
    "train_loss": "train loss",
    "test_acc": "test acc",
    "test_loss": "test loss",
    "batches_per_s": "batch/s",
}


def run_study(study: Study, opts: JobOptions) -> Path:
    """Start Ray, run (or resume) the Tuner, write the files; returns the local study folder.

    `study` and `opts` have passed `tune_jobs.options.check_study` (the command line does it
    before importing this module); what is checked here needs Ray or torch.
    """
    n_trials = study.trial_count
    root = opts.storage_root()
    exp_path = f"{root}/{opts.experiment_name}"
    check_experiment_state(exp_path, opts)
    if opts.gpus_per_trial and opts.address is None:
        check_gpus(opts.gpus_per_trial, local_gpus(), "this machine")

    # Data is decoded once, here on the driver, before any cluster work, and shipped to every
    # trial through the object store (tune.with_parameters).
    data = load_dataset(opts.dataset, study.space.get("data_dir"))

    # Ray Tune's classic progress table lets us choose its columns (PROGRESS_METRICS); the new
    # output engine does not. Tune reads this when a run starts, so setting it here is enough.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # No --address: always a fresh local Ray ("local"), never a cluster that happens to run here.
    ray.init(address=opts.address or "local")
    try:
        gpus = cluster_gpus()
        if opts.gpus_per_trial is not None:
            check_gpus(opts.gpus_per_trial, max(gpus.values(), default=0), "any node")
        gpus_per_trial = (
            opts.gpus_per_trial
            if opts.gpus_per_trial is not None
            else (1.0 if any(gpus.values()) else 0.0)
        )
        if not is_uri(root):
            check_storage_reachable(root)

        local_dir = (
            Path(exp_path)
            if not is_uri(root)
            else Path(os.path.expanduser("~/ray_results")) / opts.experiment_name
        )
        local_dir.mkdir(parents=True, exist_ok=True)
        with_data = tune.with_parameters(ray_trainable, data=data)
        # Tune names trials and their folders after the trainable: keep them train_<id>.
        with_data.__name__ = "train"
        trainable = tune.with_resources(
            with_data, {"cpu": opts.cpus_per_trial, "gpu": gpus_per_trial}
        )
        if opts.resume:
            clear_killed_run(exp_path)
            tuner = tune.Tuner.restore(
                exp_path,
                trainable=trainable,
                resume_unfinished=True,
                resume_errored=True,
                param_space=study.space,
            )
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=study.space,
                tune_config=tune_config(study, opts, local_dir),
                run_config=run_config(study, opts, root),
            )
        print(f"study {study.name}: {n_trials} trial(s) in {exp_path}", flush=True)
        result_grid = tuner.fit()
        finished = finished_trials(exp_path)
        if finished < n_trials:
            # Ctrl-C (or a stop signal): Tune saved the experiment state; no partial tables.
            raise StudyInterrupted(
                f"study interrupted with {finished} of {n_trials} trial(s) finished; the state "
                f"is saved in {exp_path}: run the same command with --resume to continue"
            )
        write_study_json(local_dir, study, opts)
        results_path, history_path, results = write_results(result_grid, study.name, local_dir)
        if study.after is not None:
            study.after(local_dir, results)
        if is_uri(root):
            upload(local_dir, exp_path)
    finally:
        ray.shutdown()
    print(f"results: {results_path}\nhistory: {history_path}")
    print(f"report:  python -m analysis {local_dir}")
    return local_dir


def check_experiment_state(exp_path: str, opts: JobOptions) -> None:
    """Refuse to overwrite an experiment without `--resume`, or to resume a missing one."""
    restorable = tune.Tuner.can_restore(exp_path)
    exists = restorable or (
        not is_uri(exp_path) and Path(exp_path).exists() and any(Path(exp_path).iterdir())
    )
    if opts.resume and not restorable:
        raise JobError(
            refusal(
                "--name",
                opts.experiment_name,
                "the name of an experiment in --storage-path (check --name and --storage-path)",
                why=f"--resume: no experiment to resume at {exp_path}",
            )
        )
    if exists and not opts.resume:
        raise JobError(
            refusal(
                "--name",
                opts.experiment_name,
                "another --name to start afresh",
                why=f"experiment {exp_path} already exists; pass --resume to continue it",
            )
        )


def finished_trials(exp_path: str) -> int:
    """Trials that ended (TERMINATED or ERROR) in the experiment state Tune saved last.

    After Ctrl-C Tune still returns a ResultGrid, with the interrupted trials stopped; the
    saved state (written before that clean-up) says which really finished, and trials never
    started are missing from it altogether.
    """
    trials = ExperimentAnalysis(exp_path).trials
    return sum(t.status in ("TERMINATED", "ERROR") for t in trials)


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
    for staging in {t.local_experiment_path for t in ExperimentAnalysis(exp_path).trials}:
        shutil.rmtree(staging, ignore_errors=True)


def tune_config(study: Study, opts: JobOptions, local_dir: Path) -> tune.TuneConfig:
    """Metric, scheduler (ASHA if the study uses it) and searcher."""
    multi = isinstance(study.metric, list)
    epochs = max(c.get("epochs", TrialConfig.epochs) for c in grid_configs(study.space))
    scheduler = None
    if uses_asha(study, opts):
        scheduler = ASHAScheduler(
            time_attr="epoch",
            max_t=epochs,
            grace_period=min(opts.grace_period, epochs),
            reduction_factor=opts.reduction_factor,
        )
    search_alg = None
    if study.make_search_alg is not None:
        # A local folder even with s3:// storage (SQLite needs one); uploaded at the end.
        search_alg = study.make_search_alg(local_dir)
        if opts.max_concurrent:
            search_alg = ConcurrencyLimiter(search_alg, max_concurrent=opts.max_concurrent)
    return tune.TuneConfig(
        metric=None if multi else study.metric,
        mode=None if multi else study.mode,
        scheduler=scheduler,
        search_alg=search_alg,
        num_samples=study.num_samples,
        max_concurrent_trials=opts.max_concurrent if search_alg is None else None,
    )


def run_config(study: Study, opts: JobOptions, root: str) -> tune.RunConfig:
    """Name, storage, checkpoints kept, retries and the progress table."""
    reporter = tune.CLIReporter(
        metric_columns=PROGRESS_METRICS,
        parameter_columns=swept_keys(study.space) or None,
        max_report_frequency=30,
    )
    return tune.RunConfig(
        name=opts.experiment_name,
        storage_path=root,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        failure_config=tune.FailureConfig(max_failures=opts.max_failures),
        progress_reporter=reporter,
        verbose=1,
    )


def upload(local_dir: Path, exp_path: str) -> None:
    """Copy the study's files (tables, study.json, optuna.db) to cloud storage."""
    fs, path = pafs.FileSystem.from_uri(exp_path)
    for f in local_dir.iterdir():
        if f.is_file() and f.suffix in (".parquet", ".json", ".db"):
            pafs.copy_files(str(f), f"{path}/{f.name}", destination_filesystem=fs)
