"""Running and resuming a study on Ray Tune, and writing its files when it ends.

`run_study` starts Ray (locally, or joins `--address`), runs the Tuner (or restores it with
`--resume`; with `--extend`, a new Tuner of the new trials alone in a sub-folder of the
experiment: `tune_jobs.extend`), and writes `study.json`, `results.parquet` and
`history.parquet` into the experiment folder (an extension's rows after the saved ones); with
`s3://` or `gs://` storage they are written locally and uploaded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
from ray import tune
from ray.tune import ExperimentAnalysis
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter

from core.columns import (
    EXTENSIONS,
    OPTUNA_DB,
    PROVENANCE,
    STATE_INTERRUPTED,
    STATE_RUNNING,
    TRIALS_FINISHED,
)
from core.data import load_dataset
from core.provenance import provenance
from core.trainable import ray_trainable
from tune_jobs.alone import run_alone_with
from tune_jobs.errors import StudyFailed, StudyInterrupted
from tune_jobs.estimate import cost_lines
from tune_jobs.extend import Extension, TuneRun, tune_run
from tune_jobs.options import JobOptions
from tune_jobs.pending import search_concurrency
from tune_jobs.preflight import is_uri
from tune_jobs.record import write_study_json
from tune_jobs.resources import (
    check_cluster,
    check_local,
    check_storage_reachable,
    cluster_resources,
    start_ray,
)
from tune_jobs.results import write_results
from tune_jobs.resume import resume_command
from tune_jobs.resume_guard import (
    check_experiment_state,
    check_extend_state,
    check_resume_state,
    clear_killed_run,
    earlier_provenance,
    has_experiment_state,
    read_experiment_file,
    saved_record,
    saved_tables,
)
from tune_jobs.study import Study, robustness_epochs, study_epochs, swept_fields, uses_asha
from tune_jobs.watch import ProgressTable, TensorBoardCallback, start_lines


def run_study(study: Study, opts: JobOptions) -> Path:
    """Start Ray, run (or resume, or extend) the Tuner, write the files; returns the local
    study folder.

    `study` and `opts` have passed `tune_jobs.study.check_study` (the command line does it
    before importing this module); what is checked here needs Ray or torch.
    """
    root = opts.storage_root()
    exp_path = f"{root}/{opts.experiment_name}"
    check_experiment_state(exp_path, opts)
    check_resume_state(exp_path, study, opts)
    extension = check_extend_state(exp_path, study, opts)
    at = tune_run(saved_record(exp_path), study, opts, extension)
    runs = extension.study(study) if extension else study  # what a new Tuner runs
    if opts.address is None:  # trials run here: the GPUs they ask for must be here
        check_local(study, opts.gpus_per_trial)

    # Data is decoded once, here on the driver, before any cluster work, and shipped to every
    # trial through the object store (tune.with_parameters). It is the dataset and location
    # every trial config names: both come from --dataset and --data-dir only
    # (JobOptions.fixed_config).
    data = load_dataset(opts.dataset, opts.data_location())
    configure_ray_output()
    dashboard_url = start_ray(opts.address)
    try:
        # What Ray sees (live nodes, node types it can launch): checked before any trial starts.
        nodes = cluster_resources()
        gpus_per_trial = check_cluster(study, opts.cpus_per_trial, opts.gpus_per_trial, nodes)
        if not is_uri(root):
            check_storage_reachable(root)
        if not opts.resume:  # what it will cost, before any trial (timed on a trial's device)
            print_cost(runs, opts, data, gpus_per_trial, nodes)

        local_dir = (
            Path(exp_path)
            if not is_uri(root)
            else Path(os.path.expanduser("~/ray_results")) / opts.experiment_name
        )
        local_dir.mkdir(parents=True, exist_ok=True)
        if extension is not None and is_uri(root):  # the search's Optuna study goes on here
            fetch_file(exp_path, OPTUNA_DB, local_dir)
        at_once = search_concurrency(
            runs.trial_count, opts.cpus_per_trial, gpus_per_trial, nodes, opts.max_concurrent
        )
        tuner = make_tuner(
            runs, opts, trainable(study, opts, data, gpus_per_trial), local_dir, at, at_once
        )
        print(started_line(study, exp_path, extension), flush=True)
        lines = start_lines(
            exp_path, dashboard_url, opts.address, opts.mlflow_uri, opts.experiment_name
        )
        print("\n".join(lines), flush=True)
        produced_by = made_by(exp_path, opts, extension)
        saved = saved_tables(exp_path) if (opts.resume or extension) else None
        result_grid = fit(tuner, study, opts, local_dir, produced_by, at)
        write_study_json(local_dir, study, opts, **produced_by)
        results_path, history_path, results = write_results(
            result_grid, study.name, local_dir, saved
        )
        if study.after is not None:
            alone = run_alone_with(opts.cpus_per_trial, gpus_per_trial, opts.address)
            study.after(local_dir, results, alone)
        if is_uri(root):
            upload(local_dir, exp_path)
        failed = errored_trials(result_grid, exp_path)
    finally:
        ray.shutdown()
    print(f"results: {results_path}\nhistory: {history_path}")
    if len(failed) < len(results):  # a report marks errored trials; of none, no report
        print(f"report:  python -m analysis {local_dir}")
    if failed:
        # The errors are data (the tables hold their rows), but the study did not do its job.
        raise StudyFailed(error_summary(opts.experiment_name, len(result_grid), failed))
    return local_dir


def made_by(exp_path: str, opts: JobOptions, extension: Extension | None) -> dict[str, Any]:
    """What study.json keeps of what made the study: this run's provenance, taken once as it
    starts (an edit of the code while it runs does not change what its record says), the
    earlier runs' and the saved extensions, this run's last if it is one."""
    out = {PROVENANCE: provenance(), **earlier_provenance(exp_path, opts)}
    if extension is not None:
        out[EXTENSIONS] = [*out.get(EXTENSIONS, []), extension.record(out[PROVENANCE])]
    return out


def started_line(study: Study, exp_path: str, extension: Extension | None) -> str:
    """`study NAME: N trial(s) in PATH`; an extension's new trials and where they run."""
    if extension is None:
        return f"study {study.name}: {study.trial_count} trial(s) in {exp_path}"
    new = extension.trials_after - extension.trials_before
    return (
        f"study {study.name}: extending {extension.trials_before} to {extension.trials_after} "
        f"trial(s): {new} new in {exp_path}/{extension.folder}"
    )


def fetch_file(exp_path: str, name: str, local_dir: Path) -> None:
    """A file of cloud storage's experiment folder into the local one (the stored copy wins
    over a local one left by an earlier run, which another machine may have extended since)."""
    raw = read_experiment_file(exp_path, name)
    if raw is not None:
        (local_dir / name).write_bytes(raw)


def trainable(study: Study, opts: JobOptions, data: Any, gpus_per_trial: float) -> Any:
    """The trial function with the data (shipped through the object store) and the epochs of
    its robustness measurements bound, asking for a trial's CPUs and GPUs."""
    # ASHA stops trials at its rungs only: robustness is measured there too (and at the end).
    with_data = tune.with_parameters(
        ray_trainable, data=data, robustness_epochs=robustness_epochs(study, opts)
    )
    # Tune names trials and their folders after the trainable: keep them train_<id>.
    with_data.__name__ = "train"
    return tune.with_resources(with_data, {"cpu": opts.cpus_per_trial, "gpu": gpus_per_trial})


def make_tuner(
    study: Study,
    opts: JobOptions,
    trainable: Any,
    local_dir: Path,
    at: TuneRun,
    at_once: int | None = None,
) -> tune.Tuner:
    """A new Tuner of `study` in `at`, or with --resume the one saved in `at` restored (once
    what a killed run left is cleared), its loggers following this run's options. `at_once`:
    the trials a search runs or keeps pending at once (tune_jobs.pending)."""
    if opts.resume:
        clear_killed_run(at.path)
        study = dataclasses.replace(study, space=at.space)
    if opts.resume and has_experiment_state(at.path):
        tuner = tune.Tuner.restore(
            at.path,
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=True,
            param_space=at.space,
        )
        watch_with_current_options(tuner, study, opts)
        return tuner
    # A new run; or the resume of one stopped before Tune saved any state (Ctrl-C as it
    # began, before Tune took over Ctrl-C: no trial had started), which Tune cannot
    # restore: it starts afresh.
    return tune.Tuner(
        trainable,
        param_space=study.space,
        tune_config=tune_config(study, opts, local_dir, at_once),
        run_config=run_config(study, opts, at),
    )


def fit(
    tuner: tune.Tuner,
    study: Study,
    opts: JobOptions,
    local_dir: Path,
    produced_by: dict,
    at: TuneRun,
) -> Any:
    """Record the study as running, run the Tuner; returns its ResultGrid once every trial
    of `at` finished, else records the study as interrupted and raises StudyInterrupted."""
    exp_path = f"{opts.storage_root()}/{opts.experiment_name}"
    save_record(local_dir, exp_path, study, opts, STATE_RUNNING, **produced_by)
    try:
        result_grid = tuner.fit()
    except KeyboardInterrupt:
        # Ctrl-C before Tune's own handler is installed (it turns later ones into a clean
        # stop): the study is as interrupted as after one, not "running" with no one running it.
        result_grid = None
    finished = finished_trials(at.path)
    if result_grid is None or finished < at.trials:
        # Ctrl-C (or a stop signal): Tune saved the experiment state; no partial tables.
        done = study.trial_count - at.trials + finished  # an extension's earlier ones too
        more = {TRIALS_FINISHED: done, **produced_by}
        save_record(local_dir, exp_path, study, opts, STATE_INTERRUPTED, **more)
        raise StudyInterrupted(
            f"study interrupted with {done} of {study.trial_count} trial(s) finished; the "
            f"state is saved in {at.path}; continue it with: {resume_command(study, opts)}"
        )
    return result_grid


def print_cost(study: Study, opts: JobOptions, data, gpus: float, nodes: dict) -> None:
    """The study's cost lines (tune_jobs.estimate). The estimate is advice: if the model cannot
    be built or timed, it says so in one line and the study goes on, so that the trials report
    the error as data (errored rows, the summary at the end) as they always do."""
    try:
        lines = cost_lines(
            study, opts, data, gpus, nodes, run_alone_with(opts.cpus_per_trial, gpus, opts.address)
        )
    except Exception as e:  # noqa: BLE001 (any failure of the advice; the trials say more)
        lines = [f"cost: not estimated ({error_message(e)})"]
    for line in lines:
        print(line, flush=True)


def error_message(error: BaseException) -> str:
    """The first line of what the trial raised: Ray wraps it (RayTaskError), `cause` is it."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def errored_trials(result_grid, exp_path: str) -> list[tuple[str, str]]:
    """(error message, error file) of each trial whose final status is ERROR."""
    out = []
    for result in result_grid:
        if result.error is not None:
            trial_dir = result.path or exp_path  # the trial folder in --storage-path
            out.append((error_message(result.error), f"{trial_dir}/error.txt"))
    return out


def error_summary(name: str, n_trials: int, failed: list[tuple[str, str]]) -> str:
    """`study NAME: K of N trial(s) errored`, then each distinct error once with its count and
    one trial's error file (the full traceback of every attempt)."""
    lines = [f"study {name}: {len(failed)} of {n_trials} trial(s) errored"]
    by_message: dict[str, list[str]] = {}
    for message, path in failed:
        by_message.setdefault(message, []).append(path)
    for message, paths in by_message.items():
        lines.append(f"  {len(paths)} trial(s): {message}")
        lines.append(f"    traceback: {paths[0]}")
    return "\n".join(lines)


def finished_trials(exp_path: str) -> int:
    """Trials that ended (TERMINATED or ERROR) in the experiment state Tune saved last.

    After Ctrl-C Tune still returns a ResultGrid, with the interrupted trials stopped; the
    saved state (written before that clean-up) says which really finished, and trials never
    started are missing from it altogether.
    """
    if not has_experiment_state(exp_path):  # stopped before Tune saved its first state
        return 0
    trials = ExperimentAnalysis(exp_path).trials
    return sum(t.status in ("TERMINATED", "ERROR") for t in trials)


def tune_config(
    study: Study, opts: JobOptions, local_dir: Path, at_once: int | None = None
) -> tune.TuneConfig:
    """Metric, scheduler (ASHA if the study uses it) and searcher. A search is wrapped in a
    ConcurrencyLimiter of `at_once` trials (default: --max-concurrent, else unlimited), which
    Tune also takes as the search's pending trials (tune_jobs.pending says why)."""
    multi = isinstance(study.metric, list)
    epochs = study_epochs(study)
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
        limit = at_once or opts.max_concurrent
        if limit:
            search_alg = ConcurrencyLimiter(search_alg, max_concurrent=limit)
    return tune.TuneConfig(
        metric=None if multi else study.metric,
        mode=None if multi else study.mode,
        scheduler=scheduler,
        search_alg=search_alg,
        num_samples=study.num_samples,
        max_concurrent_trials=opts.max_concurrent if search_alg is None else None,
        # A finished trial's worker process takes the next trial (Ray restarts the function
        # in it) instead of a new process importing torch again: seconds per trial, the most
        # of Ray's overhead on short trials (benchmarks/ray_overhead.py). Safe because a
        # trial sets everything it depends on (seeds, threads) from its config.
        reuse_actors=True,
    )


def run_config(study: Study, opts: JobOptions, at: TuneRun) -> tune.RunConfig:
    """Name, storage, checkpoints kept, retries, the progress table and the loggers."""
    reporter, callbacks = watchers(study, opts)
    return tune.RunConfig(
        name=at.name,
        storage_path=at.root,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        # Each trial's predictions file (core.predictions, in its working directory) is synced
        # into its trial folder at every report that carries a checkpoint (Ray's default).
        sync_config=tune.SyncConfig(sync_artifacts=True),
        failure_config=tune.FailureConfig(max_failures=opts.max_failures),
        progress_reporter=reporter,
        callbacks=callbacks,
        verbose=1,
    )


def watchers(study: Study, opts: JobOptions) -> tuple[ProgressTable, list[Any]]:
    """The progress table (its parameter columns the swept fields, a bundle's fields one column
    each) and the loggers: TensorBoard event files in every trial folder (replacing Ray's
    default TBX logger), MLflow with --mlflow-uri. Ray adds its CSV and JSON loggers."""
    fields = swept_fields(study.space)
    callbacks: list[Any] = [TensorBoardCallback(list(fields.values()))]
    if opts.mlflow_uri is not None:
        from tune_jobs.mlflow_runs import mlflow_callback  # MLflow's import only when asked for

        callbacks.append(mlflow_callback(opts.mlflow_uri, opts.experiment_name, study.name))
    return ProgressTable(fields or None), callbacks


def watch_with_current_options(tuner: tune.Tuner, study: Study, opts: JobOptions) -> None:
    """`Tuner.restore` brings back the run config pickled when the study started, its loggers
    and progress table too; they follow this run's options instead (--mlflow-uri may differ
    on --resume, like resources). Ray has no public setter: the restored run config is the
    local tuner's (a Ray Client driver, ray://, keeps the saved ones)."""
    local = getattr(tuner, "_local_tuner", None)
    if local is None:
        return
    config = local.get_run_config()
    config.progress_reporter, config.callbacks = watchers(study, opts)


def upload(local_dir: Path, exp_path: str) -> None:
    """Copy the study's files (tables, study.json, optuna.db) to cloud storage."""
    fs, path = pafs.FileSystem.from_uri(exp_path)
    for f in local_dir.iterdir():
        if f.is_file() and f.suffix in (".parquet", ".json", ".db"):
            pafs.copy_files(str(f), f"{path}/{f.name}", destination_filesystem=fs)


def save_record(
    local_dir: Path, exp_path: str, study: Study, opts: JobOptions, state: str, **more: Any
) -> None:
    """Write study.json with the study's state (and upload it with cloud storage): written
    when the study starts, so that --resume and the report know what it was started with.
    `more` holds what the record gets besides `study_record`'s own keys: the runner passes
    `core.columns.PROVENANCE` (core.provenance needs torch, which tune_jobs.record may not
    import), and TRIALS_FINISHED when the study was interrupted."""
    path = write_study_json(local_dir, study, opts, state, **more)
    if is_uri(exp_path):
        fs, remote = pafs.FileSystem.from_uri(exp_path)
        pafs.copy_files(str(path), f"{remote}/{path.name}", destination_filesystem=fs)


def configure_ray_output() -> None:
    """Ray's lines a user cannot act on, turned off through Ray's own settings; the progress
    table (CLIReporter) and the project's lines stay. A setting already in the environment wins.

    * `TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S=0`: Tune forces an
      experiment-state snapshot each time a trial has checkpointed `num_to_keep` times, and
      warns when two come within 5 s (short epochs, several trials); 0 is Ray's documented
      "off" for that warning. The slow-sync warning (a slow storage) stays.
    * the `ray.tune.tune` logger at ERROR: its INFO lines (final sync, run time) and its
      warnings on Ctrl-C (the `Tuner.restore(...)` hint) are replaced by the project's own
      line with the `--resume` command. Errors still show.
    * the `ray.tune.analysis.experiment_analysis` logger at ERROR: on `--resume` of an
      interrupted study it warns once per trial that had not started ("Failed to fetch
      metrics ... both result.json and progress.csv were not found"): trials still to run,
      which the resume runs.
    * the trials' `ray.train` logger (per-epoch "Checkpoint successfully created at") is set
      in `core.trainable`, in the process that logs it.
    """
    # Ray Tune's classic progress table lets us choose its columns (watch.ProgressTable); the new
    # output engine does not. Tune reads this when a run starts, so setting it here is enough.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A trial's traceback goes to its error.txt only, not to the console once per attempt (a
    # documented Tune variable); the summary at the end names each distinct error once.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    logging.getLogger("ray.tune.tune").setLevel(logging.ERROR)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
