"""Options and machinery shared by every study script.

A study script defines its parameter space as a function of `JobOptions` and calls `cli()`;
everything else (checks before Ray starts, loading the data once, resources, ASHA, resume,
the progress table and the parquet files at the end) lives here, so every job behaves alike.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

# Ray Tune's classic table lets us choose its columns (the new output engine does not).
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import typer  # noqa: E402

from core.config import DATASETS, ConfigError, TrialConfig, parse_field  # noqa: E402

SpaceFn = Callable[["JobOptions"], dict[str, Any]]

# What a researcher watches while a study runs: Ray Tune's table gets these columns.
PROGRESS_METRICS = {
    "epoch": "epoch",
    "train_loss": "train loss",
    "test_acc": "test acc",
    "test_loss": "test loss",
    "batches_per_s": "batch/s",
}
SMOKE = {"arch": "simple_cnn", "train_subset": 500, "test_subset": 250, "epochs": 2}


class JobError(Exception):
    """A bad option or state found before (or instead of) starting any trial."""


class StudyInterrupted(Exception):
    """The Tuner stopped before every trial finished; the experiment can be resumed."""


def _opt(help: str, *names: str) -> Any:
    return typer.Option(*names, help=help)


@dataclass
class JobOptions:
    smoke: Annotated[
        bool, _opt("Tiny subset, simple_cnn, 2 epochs, reduced grid: minutes on 2 CPUs.")
    ] = False  # noqa: E501
    dataset: Annotated[str, _opt(f"One of {list(DATASETS)}.")] = "cifar10"
    data_dir: Annotated[
        str | None, _opt("Dataset root (else $ENSEMBLE_DATA_DIR, else download).")
    ] = None  # noqa: E501
    epochs: Annotated[int | None, _opt("Epochs per trial (default: the study's).")] = None
    seeds: Annotated[int, _opt("Replicates per cell: seed becomes a grid dimension 0..N-1.")] = 1
    address: Annotated[
        str | None,
        _opt("Ray address; 'auto' joins a running cluster (default: start Ray locally)."),
    ] = None  # noqa: E501
    storage_path: Annotated[str, _opt("Experiment root: local folder, s3:// or gs://.")] = (
        "~/ray_results"  # noqa: E501
    )
    name: Annotated[str | None, _opt("Experiment name (default: the study's name).")] = None
    resume: Annotated[bool, _opt("Continue the interrupted experiment of this name.")] = False
    cpus_per_trial: Annotated[float, _opt("CPUs per trial; also its torch thread count.")] = 1.0
    gpus_per_trial: Annotated[
        float | None,
        _opt(
            "GPUs per trial, fractions share a GPU (default: 1 when the cluster has GPUs, else 0)."
        ),
    ] = None  # noqa: E501
    max_concurrent: Annotated[
        int | None, _opt("Most trials at once (default: as resources allow).")
    ] = None  # noqa: E501
    asha: Annotated[
        bool | None,
        typer.Option(
            "--asha/--no-asha", help="ASHA early stopping of weak trials (default: the study's)."
        ),
    ] = None  # noqa: E501
    grace_period: Annotated[int, _opt("ASHA: epochs before a trial can be stopped.")] = 2
    reduction_factor: Annotated[float, _opt("ASHA: keep 1/factor of trials at each rung.")] = 3.0
    max_failures: Annotated[int, _opt("Retries of a failed trial from its last checkpoint.")] = 3
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Fix a config field, e.g. --set norm=member (repeatable)."),
    ] = None  # noqa: E501

    # ------------------------------------------------------------------
    def check(self) -> None:
        """Option errors that need no Ray: one message naming option, value and what is allowed."""
        if self.dataset not in DATASETS:
            raise JobError(
                f"--dataset={self.dataset!r} is not allowed; choose one of {list(DATASETS)}"
            )  # noqa: E501
        if self.seeds < 1:
            raise JobError(f"--seeds={self.seeds}: must be >= 1")
        if self.epochs is not None and self.epochs < 1:
            raise JobError(f"--epochs={self.epochs}: must be >= 1")
        if self.cpus_per_trial <= 0:
            raise JobError(f"--cpus-per-trial={self.cpus_per_trial}: must be > 0")
        if self.gpus_per_trial is not None:
            g = self.gpus_per_trial
            if g < 0 or (g > 1 and g != int(g)):
                raise JobError(
                    f"--gpus-per-trial={g}: must be a fraction in [0, 1] or a whole number"
                )  # noqa: E501
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise JobError(f"--max-concurrent={self.max_concurrent}: must be >= 1")
        if self.grace_period < 1:
            raise JobError(f"--grace-period={self.grace_period}: must be >= 1")
        if self.reduction_factor <= 1:
            raise JobError(f"--reduction-factor={self.reduction_factor}: must be > 1")
        if self.data_dir is not None and not is_uri(self.data_dir):
            if not Path(self.data_dir).expanduser().exists():
                raise JobError(f"--data-dir={self.data_dir!r}: no such folder")

    def base(self, **study: Any) -> dict[str, Any]:
        """The fixed part of every trial's config: study defaults, then smoke preset, then CLI."""
        cfg = dict(study)
        if self.smoke:
            cfg.update(SMOKE)
        if self.epochs is not None:
            cfg["epochs"] = self.epochs
        cfg["dataset"] = self.dataset
        if self.data_dir is not None:
            cfg["data_dir"] = str(Path(self.data_dir).expanduser().resolve())
        cfg["num_threads"] = max(1, int(self.cpus_per_trial))
        cfg.update(self.parsed_overrides())
        return cfg

    def parsed_overrides(self) -> dict[str, Any]:
        """`--set key=value` pairs, typed like the TrialConfig field they set."""
        out: dict[str, Any] = {}
        for item in self.overrides or []:
            key, sep, raw = item.partition("=")
            if not sep:
                raise JobError(f"--set {item!r}: expected key=value, e.g. --set norm=member")
            out[key.strip()] = parse_field(key.strip(), raw.strip())
        return out

    @property
    def experiment_name(self) -> str:
        return self.name or "study"

    def storage_root(self) -> str:
        if is_uri(self.storage_path):
            return self.storage_path.rstrip("/")
        return str(Path(self.storage_path).expanduser().resolve())


def is_uri(path: str) -> bool:
    return "://" in path


def grid(values: Any) -> dict[str, list[Any]]:
    """`tune.grid_search` without importing Ray (the dict form Ray Tune reads)."""
    return {"grid_search": list(values)}


def grid_configs(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Every config of a grid space (the cartesian product of its grid_search keys)."""
    keys = [k for k, v in space.items() if isinstance(v, dict) and "grid_search" in v]
    fixed = {k: v for k, v in space.items() if k not in keys}
    out = []
    for combo in itertools.product(*(space[k]["grid_search"] for k in keys)):
        out.append({**fixed, **dict(zip(keys, combo, strict=True))})
    return out


def with_seeds(space: dict[str, Any], seeds: int) -> dict[str, Any]:
    space = dict(space)
    space["seed"] = grid(range(seeds)) if seeds > 1 else 0
    return space


# ----------------------------------------------------------------------------------------
# Running a study
# ----------------------------------------------------------------------------------------
@dataclass
class Study:
    """What a script hands to `run_study`: its name, its space, and how it is searched."""

    name: str
    space: dict[str, Any]
    asha: bool = False
    metric: str | list[str] = "test_acc"
    mode: str | list[str] = "max"
    num_samples: int = 1
    make_search_alg: Callable[[Path], Any] | None = None  # gets the local experiment folder
    after: Callable[[Path, Any], None] | None = None  # extra files once results are written
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # merged into study.json


def validate_space(study: Study) -> int:
    """Validate every grid config before Ray starts; returns the number of grid cells."""
    configs = grid_configs(study.space)
    for cfg in configs:
        if study.make_search_alg is None:
            TrialConfig.from_dict(cfg)
    return len(configs)


def run_study(study: Study, opts: JobOptions) -> Path:
    """Check, start Ray, run (or resume) the Tuner, write the parquet files; returns the folder."""
    opts.check()
    swept = [k for k, v in study.space.items() if isinstance(v, dict) and "grid_search" in v]
    clash = sorted(set(opts.parsed_overrides()) & set(swept))
    if clash:
        raise JobError(
            f"--set {clash[0]}: {clash[0]!r} is swept by the {study.name} study; "
            f"fixed fields only (swept: {swept})"
        )
    cells = validate_space(study)  # every config checked before Ray starts
    n_trials = study.num_samples * (1 if study.make_search_alg else cells)
    root = opts.storage_root()
    exp_path = f"{root}/{opts.experiment_name}"
    _check_experiment_state(exp_path, opts)
    if opts.gpus_per_trial and opts.address is None:
        _check_gpus(opts.gpus_per_trial, _local_gpus(), "this machine")

    # Data is decoded once, here on the driver, before any cluster work, and shipped to every
    # trial through the object store (tune.with_parameters).
    from core.data import load_dataset

    data = load_dataset(opts.dataset, study.space.get("data_dir"))

    import ray
    from ray import tune

    from core.trainable import train
    from tune_jobs.results import write_results

    # No --address: always a fresh local Ray ("local"), never a cluster that happens to run here.
    ray.init(address=opts.address or "local")
    try:
        gpus = _cluster_gpus()
        if opts.gpus_per_trial is not None:
            _check_gpus(opts.gpus_per_trial, max(gpus.values(), default=0), "any node")
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
        trainable = tune.with_resources(
            tune.with_parameters(train, data=data),
            {"cpu": opts.cpus_per_trial, "gpu": gpus_per_trial},
        )
        if opts.resume:
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
                tune_config=_tune_config(study, opts, local_dir),
                run_config=_run_config(study, opts, root),
            )
        print(f"study {study.name}: {n_trials} trial(s) in {exp_path}", flush=True)
        grid = tuner.fit()
        finished = _finished_trials(exp_path)
        if finished < n_trials:
            # Ctrl-C (or a stop signal): Tune saved the experiment state; no partial tables.
            raise StudyInterrupted(
                f"study interrupted with {finished} of {n_trials} trial(s) finished; the state "
                f"is saved in {exp_path}: run the same command with --resume to continue"
            )
        _write_study_json(local_dir, study, opts)
        results_path, history_path, results = write_results(grid, study.name, local_dir)
        if study.after is not None:
            study.after(local_dir, results)
        if is_uri(root):
            _upload(local_dir, exp_path)
    finally:
        ray.shutdown()
    print(f"results: {results_path}\nhistory: {history_path}")
    print(f"report:  python -m analysis {local_dir}")
    return local_dir


def _finished_trials(exp_path: str) -> int:
    """Trials that ended (TERMINATED or ERROR) in the experiment state Tune saved last.

    After Ctrl-C Tune still returns a ResultGrid, with the interrupted trials stopped; the
    saved state (written before that clean-up) says which really finished, and trials never
    started are missing from it altogether.
    """
    from ray.tune import ExperimentAnalysis

    trials = ExperimentAnalysis(exp_path).trials
    return sum(t.status in ("TERMINATED", "ERROR") for t in trials)


def _tune_config(study: Study, opts: JobOptions, local_dir: Path):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    asha = study.asha if opts.asha is None else opts.asha
    multi = isinstance(study.metric, list)
    if asha and multi:
        raise JobError(
            "--asha: ASHA ranks trials by one metric; a multi-objective search runs "
            "without it (use --no-asha)"
        )
    epochs = max(c.get("epochs", TrialConfig.epochs) for c in grid_configs(study.space))
    scheduler = None
    if asha:
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
            from ray.tune.search import ConcurrencyLimiter

            search_alg = ConcurrencyLimiter(search_alg, max_concurrent=opts.max_concurrent)
    return tune.TuneConfig(
        metric=None if multi else study.metric,
        mode=None if multi else study.mode,
        scheduler=scheduler,
        search_alg=search_alg,
        num_samples=study.num_samples,
        max_concurrent_trials=opts.max_concurrent if search_alg is None else None,
    )


def _run_config(study: Study, opts: JobOptions, root: str):
    from ray import tune

    swept = [k for k, v in study.space.items() if isinstance(v, dict)]
    reporter = tune.CLIReporter(
        metric_columns=PROGRESS_METRICS,
        parameter_columns=swept or None,
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


def _check_experiment_state(exp_path: str, opts: JobOptions) -> None:
    from ray.tune import Tuner

    exists = Tuner.can_restore(exp_path) or (
        not is_uri(exp_path) and Path(exp_path).exists() and any(Path(exp_path).iterdir())
    )
    if opts.resume and not Tuner.can_restore(exp_path):
        raise JobError(
            f"--resume: no experiment to resume at {exp_path} (check --name and --storage-path)"
        )
    if exists and not opts.resume:
        raise JobError(
            f"--name={opts.experiment_name!r}: experiment {exp_path} already exists; "
            "pass --resume to continue it, or another --name to start afresh"
        )


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def _cluster_gpus() -> dict[str, float]:
    """GPUs per node: the live nodes, plus the node types the autoscaler may still launch.

    Right after `ray up` the GPU workers (min 0) do not exist yet; the launcher's config on
    the head (`~/ray_bootstrap_config.yaml`, resources filled in by `ray up`) says what can.
    """
    import ray

    gpus = {
        n["NodeManagerAddress"]: n["Resources"].get("GPU", 0.0) for n in ray.nodes() if n["Alive"]
    }
    bootstrap = Path("~/ray_bootstrap_config.yaml").expanduser()
    if bootstrap.exists():
        import yaml

        types = (yaml.safe_load(bootstrap.read_text()) or {}).get("available_node_types", {})
        for name, spec in types.items():
            if spec.get("max_workers", 0) > 0 or spec.get("min_workers", 0) > 0:
                gpus[f"node type {name}"] = float((spec.get("resources") or {}).get("GPU", 0))
    return gpus


def _check_gpus(per_trial: float, most: float, where: str) -> None:
    if per_trial > most:
        raise JobError(
            f"--gpus-per-trial={per_trial}: {where} has at most {most:g} GPU(s); "
            "use a value <= that (fractions such as 0.25 share one GPU)"
        )


def check_storage_reachable(root: str) -> None:
    """Refuse a local storage path that some node of a multi-node cluster cannot see.

    A marker file is written here and looked for by a task pinned to every alive node: a
    shared file system passes, a folder private to the head node does not.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n["Alive"]]
    if len(nodes) <= 1:
        return
    Path(root).mkdir(parents=True, exist_ok=True)
    marker = Path(root) / f".reachable-{uuid.uuid4().hex}"
    marker.write_text("ok")

    @ray.remote(num_cpus=0)
    def _sees(path: str) -> bool:
        return os.path.exists(path)

    try:
        refs = {
            n["NodeManagerAddress"] + ":" + n["NodeID"][:8]: _sees.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(str(marker))
            for n in nodes
        }
        blind = [node for node, ref in refs.items() if not ray.get(ref, timeout=120)]
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise JobError(
            f"--storage-path={root!r}: a local folder that node(s) {blind} cannot reach; on a "
            "multi-node cluster use cloud storage (s3://bucket/path, gs://bucket/path) or a "
            "shared file system mounted at the same path on every node"
        )


def _write_study_json(local_dir: Path, study: Study, opts: JobOptions) -> None:
    info = {
        "study": study.name,
        "name": opts.experiment_name,
        "dataset": opts.dataset,
        "smoke": opts.smoke,
        "metric": study.metric,
        "mode": study.mode,
        **study.info,
    }
    if study.make_search_alg is not None:
        info["optuna_study"] = opts.experiment_name  # the Optuna study in optuna.db
    (local_dir / "study.json").write_text(json.dumps(info, indent=2))


def _upload(local_dir: Path, exp_path: str) -> None:
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(exp_path)
    for f in local_dir.iterdir():
        if f.is_file() and f.suffix in (".parquet", ".json", ".db"):
            pafs.copy_files(str(f), f"{path}/{f.name}", destination_filesystem=fs)


# ----------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------
def cli(
    make_study: Callable[..., Study],
    extra: list[inspect.Parameter] | None = None,
    doc: str | None = None,
) -> None:
    """Run a study script's command line: the common options plus the script's `extra` ones.

    `make_study(opts, **extra_values)` returns the Study; errors in options or configs print
    one line and exit with status 2 before Ray starts.
    """
    common = [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=f.default,
            annotation=f.type if not isinstance(f.type, str) else _hint(f.name),
        )
        for f in dataclasses.fields(JobOptions)
    ]
    extra = extra or []
    names = {p.name for p in extra}

    def command(**values: Any) -> None:
        opts = JobOptions(**{k: v for k, v in values.items() if k not in names})
        try:
            study = make_study(opts, **{k: values[k] for k in names})
            if opts.name is None:
                opts.name = study.name + ("_smoke" if opts.smoke else "")
            run_study(study, opts)
        except (JobError, ConfigError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(2) from None
        except StudyInterrupted as e:
            print(str(e), file=sys.stderr)
            raise typer.Exit(130) from None

    command.__signature__ = inspect.Signature(common + extra)  # type: ignore[attr-defined]
    command.__doc__ = doc
    typer.run(command)


def _hint(name: str) -> Any:
    import typing

    return typing.get_type_hints(JobOptions, include_extras=True)[name]


def option(name: str, default: Any, annotation: Any, help: str) -> inspect.Parameter:
    """A script-specific command-line option for `cli(extra=[...])`."""
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[annotation, typer.Option(help=help)],
    )
