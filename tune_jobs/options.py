"""What a study is and the options every study script takes, checked without Ray or torch.

A study script builds its parameter space from `JobOptions` with `grid` and `with_seeds`, wraps
it in a `Study` and hands both to `tune_jobs.cli.cli`. Everything here can be imported, and
every study's space built and checked, without loading Ray or torch (tests/tune_jobs checks it):
that is what lets a bad option be refused in a moment, before Ray starts.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import math
import os
import re
import shlex
import socket
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.columns import (
    DRIVER,
    RESUME_COMMAND,
    STATE_FINISHED,
    STUDY_FILE,
    STUDY_OPTIONS,
    STUDY_ROBUSTNESS_EPOCHS,
    STUDY_SELECTION_METRIC,
    STUDY_SELECTION_MODE,
    STUDY_SPACE,
    STUDY_STATE,
    TRIALS,
    VAL_ACC,
)
from core.config import DATASETS, MAX_EPOCHS, TrialConfig, parse_field
from core.errors import refusal

# Presets: the scale a study runs at. `full` is each study's own (the student study's VGG11,
# the whole training set, 10-15 epochs: GPU clusters); the others fix config fields on top of
# the study's defaults (and each study script may reduce its grid for them, see README).
# The smoke preset: a pipeline check of about two minutes on 2 CPU cores, the same files as a
# full run, that learns (its best alpha_gamma trial >= 30% test accuracy on the real CIFAR-10:
# benchmarks/smoke_floor.py checks it) but answers no study's question.
# (alpha_gamma's smoke also raises Adam's lr to 3e-3: the preset cannot, as other studies
# sweep or bundle lr.)
SMOKE = {
    "arch": "simple_cnn",
    "train_subset": 4000,
    "test_subset": 500,
    "epochs": 4,
    # robustness at smoke size: under 20% of the trial (benchmarks/robustness_cost.py)
    "corruption_subset": 10,
    "ood_subset": 100,
}
# The CPU preset: each study's answer readable on 2 cores, 3 seeds in about 45 minutes: the
# small CNN, a stratified 5,000-image training subset (10% of it held out), 6 epochs, 2,000
# test images; each study runs a reduced grid (README's studies table names it).
CPU = {"arch": "simple_cnn", "train_subset": 5000, "test_subset": 2000, "epochs": 6}
PRESETS = {
    "full": "each study's own scale (VGG11, the whole training set, 10-15 epochs): GPU clusters",
    "cpu": "simple_cnn, 5,000 training images, 6 epochs, a reduced grid: 3 seeds in ~45 min "
    "on 2 CPUs",
    "smoke": "a pipeline check of ~2 min on 2 CPUs (simple_cnn, 4,000 images, 4 epochs, a "
    "2x2 grid): it learns, but answers nothing",
}
PRESET_CONFIG: dict[str, dict[str, Any]] = {"full": {}, "cpu": CPU, "smoke": SMOKE}
# Every study holds out this share of the training set (stratified) as its validation split:
# selection (ASHA, the Optuna objective, "best" in the progress table and the report) reads
# validation metrics only, never the test set. `--set val_fraction=...` changes it.
VAL_FRACTION = 0.1

# Upper bounds no study needs: a typo (an extra digit, a pasted huge number) is refused at once
# instead of running for ever. Epochs share TrialConfig's bound (core.config.MAX_EPOCHS).
MAX_SEEDS = 1_000  # replicates per cell; 10 is already a lot
MAX_TRIALS = 100_000  # --max-concurrent and a search's --num-samples
MAX_FAILURES = 100  # retries of one trial
MAX_REDUCTION_FACTOR = 1_000.0  # ASHA keeps 1/factor per rung; 2..4 is usual

# TrialConfig fields that have their own option: the job reads the option (to load the data on
# the driver, to size the trial's resources), so `--set` of the field is refused in its favour.
OWN_OPTION = {
    "dataset": "--dataset",
    "data_dir": "--data-dir",
    "epochs": "--epochs",
    "num_threads": "--cpus-per-trial",  # a trial's torch threads follow its CPUs
}
STORAGE_ALLOWED = "a writable folder, s3://bucket/path or gs://bucket/path"
ADDRESS_ALLOWED = (
    "'auto' with a running cluster, host:port of a head node (ray://host:port for Ray Client), "
    "or no --address for a local Ray"
)
CONNECT_TIMEOUT_S = 3.0  # a head node answers in milliseconds
# MLflow tracking stores the job can log to (Ray's MLflowLoggerCallback on the driver): a local
# file store (MLflow >= 3.7 keeps it in maintenance mode; the runner opts in to it), SQLite, a
# tracking server, Databricks.
MLFLOW_SCHEMES = ("file", "sqlite", "http", "https", "databricks")
MLFLOW_ALLOWED = (
    "file:///absolute/folder, sqlite:///path/mlflow.db, http(s)://host:port of a tracking "
    "server, or databricks"
)
MLFLOW_INSTALL = 'pip install -e ".[mlflow]"'


class JobError(Exception):
    """A bad option or state found before (or instead of) starting any trial."""


class StudyInterrupted(Exception):
    """The Tuner stopped before every trial finished; the experiment can be resumed."""


class StudyFailed(Exception):
    """The study ran to its end, files written, but some trials errored; the message names how
    many, each distinct error once and where a trial's traceback is."""


class NothingToResume(Exception):
    """`--resume` of a study that finished: its results are there, nothing is run."""


def _option(
    default: Any, help: str, flag: str | None = None, choices: Iterable[str] | None = None
) -> Any:
    """A JobOptions field: its default, its `--help` text, if not `--field-name` its flag, and
    the values it allows if they are a fixed set (`choices`: the command line offers and checks
    them, `JobOptions.check` checks them too)."""
    metadata: dict[str, Any] = {"help": help}
    if flag is not None:
        metadata["flag"] = flag
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return dataclasses.field(default=default, metadata=metadata)


# A study's name is one folder inside --storage-path: no separators, no `..`, nothing a file
# system, S3 or a shell would read as more than a name. ASCII letters, digits and `_.+=@-`,
# not starting with a dot (`.`, `..`, hidden folders), at most 255 characters (a file name's
# limit on common file systems).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_+=@-][A-Za-z0-9_.+=@-]{0,254}")
NAME_ALLOWED = (
    "one folder name inside --storage-path: ASCII letters, digits and '_.+=@-', not starting "
    "with '.', at most 255 characters"
)


@dataclass(kw_only=True)
class JobOptions:
    """The options every study script takes; `tune_jobs.cli` makes one command-line option of
    each field (`--field-name`, or `flag` from the field's metadata) with the field's help."""

    preset: str = _option("full", "The study's scale (see below).", choices=PRESETS)
    smoke: bool = _option(False, "Alias of --preset smoke: a pipeline check of ~2 min on 2 CPUs.")
    dataset: str = _option("cifar10", "The dataset every trial trains on.", choices=DATASETS)
    data_dir: str | None = _option(None, "Dataset root (else $ENSEMBLE_DATA_DIR, else download).")
    epochs: int | None = _option(None, "Epochs per trial (default: the study's).")
    seeds: int = _option(1, "Replicates per cell: seed becomes a grid dimension 0..N-1.")
    address: str | None = _option(
        None, "Ray address; 'auto' joins a running cluster (default: start Ray locally)."
    )
    storage_path: str = _option("~/ray_results", "Experiment root: local folder, s3:// or gs://.")
    name: str | None = _option(
        None, "Experiment name, a folder in --storage-path (default: the study's name)."
    )
    resume: bool = _option(False, "Continue the interrupted experiment of this name.")
    cpus_per_trial: float = _option(1.0, "CPUs per trial; also its torch thread count.")
    gpus_per_trial: float | None = _option(
        None,
        "GPUs per trial, fractions share a GPU (default: 1 when the cluster has GPUs, else 0).",
    )
    max_concurrent: int | None = _option(None, "Most trials at once (default: as resources allow).")
    asha: bool | None = _option(None, "ASHA early stopping of weak trials (default: the study's).")
    grace_period: int = _option(2, "ASHA: epochs before a trial can be stopped.")
    reduction_factor: float = _option(3.0, "ASHA: keep 1/factor of trials at each rung.")
    max_failures: int = _option(3, "Retries of a failed trial from its last checkpoint.")
    mlflow_uri: str | None = _option(
        None,
        "Also log every trial to this MLflow tracking URI (file:///folder, sqlite:///file.db, "
        "http://host:port); needs the mlflow extra.",
    )
    overrides: tuple[str, ...] = _option(
        (), "Fix a config field, e.g. --set norm=member (repeatable).", flag="--set"
    )

    def __post_init__(self) -> None:
        # --smoke is --preset smoke; `smoke` stays true of a smoke study either way.
        if self.smoke and self.preset == "full":
            self.preset = "smoke"
        self.smoke = self.smoke or self.preset == "smoke"

    def check(self) -> None:
        """Option errors that need no Ray: one message naming option, value and what is allowed.
        The command line runs this before the study script builds anything from the options."""
        for f in dataclasses.fields(self):
            allowed = f.metadata.get("choices")
            if allowed is not None and getattr(self, f.name) not in allowed:
                raise JobError(refusal(flag_of(f.name), getattr(self, f.name), list(allowed)))
        if self.smoke and self.preset != "smoke":
            raise JobError(
                refusal(
                    "--smoke",
                    True,
                    f"--preset {self.preset} alone",
                    why=f"--smoke is --preset smoke, which contradicts --preset {self.preset}",
                )
            )
        if self.name is not None and not NAME_PATTERN.fullmatch(self.name):
            raise JobError(refusal("--name", self.name, NAME_ALLOWED))
        check_int("--seeds", self.seeds, 1, MAX_SEEDS)
        if self.epochs is not None:
            check_int("--epochs", self.epochs, 1, MAX_EPOCHS)
        c = self.cpus_per_trial
        if not math.isfinite(c) or c <= 0:
            raise JobError(refusal("--cpus-per-trial", c, "a number > 0"))
        g = self.gpus_per_trial
        if g is not None and (not math.isfinite(g) or g < 0 or (g > 1 and g != int(g))):
            raise JobError(refusal("--gpus-per-trial", g, "a fraction in [0, 1] or a whole number"))
        if self.max_concurrent is not None:
            check_int("--max-concurrent", self.max_concurrent, 1, MAX_TRIALS)
        check_int("--grace-period", self.grace_period, 1, MAX_EPOCHS)
        r = self.reduction_factor
        if not math.isfinite(r) or not 1 < r <= MAX_REDUCTION_FACTOR:
            raise JobError(
                refusal("--reduction-factor", r, f"a number > 1 and <= {MAX_REDUCTION_FACTOR:g}")
            )
        check_int("--max-failures", self.max_failures, 0, MAX_FAILURES)
        if self.data_dir is not None and not is_uri(self.data_dir):
            if not Path(self.data_dir).expanduser().exists():
                raise JobError(
                    refusal("--data-dir", self.data_dir, "an existing folder", why="no such folder")
                )
        if not is_uri(self.storage_path):
            check_storage_path(self.storage_path)
        check_address(self.address)
        if self.mlflow_uri is not None:
            check_mlflow_uri(self.mlflow_uri)
        if self.address is None:  # a local Ray: trials run on this machine's CPUs
            check_cpus(self.cpus_per_trial, local_cpus(), "this machine")

    def base(self, **study: Any) -> dict[str, Any]:
        """The fixed part of every trial's config: the validation split (VAL_FRACTION), study
        defaults, then the preset (`PRESET_CONFIG`), then CLI."""
        cfg = {"val_fraction": VAL_FRACTION, **study}
        cfg.update(PRESET_CONFIG.get(self.preset, {}))
        if self.epochs is not None:
            cfg["epochs"] = self.epochs
        cfg.update(self.parsed_overrides())
        # Last, so that neither a study's defaults nor --set can differ from what the driver
        # loads (`data_location`) and the resources a trial gets.
        cfg["dataset"] = self.dataset
        cfg.pop("data_dir", None)
        if self.data_location() is not None:
            cfg["data_dir"] = self.data_location()
        cfg["num_threads"] = max(1, int(self.cpus_per_trial))
        return cfg

    def data_location(self) -> str | None:
        """`--data-dir` as every trial's config names it and the driver loads it: resolved,
        or None (then $ENSEMBLE_DATA_DIR, else the user cache)."""
        if self.data_dir is None or is_uri(self.data_dir):
            return self.data_dir
        return str(Path(self.data_dir).expanduser().resolve())

    def parsed_overrides(self) -> dict[str, Any]:
        """`--set key=value` pairs, typed like the TrialConfig field they set. A field with its
        own option (`OWN_OPTION`) is refused: the option is the one place its value comes from."""
        out: dict[str, Any] = {}
        for item in self.overrides:
            key, sep, raw = item.partition("=")
            if not sep:
                raise JobError(refusal("--set", item, "key=value, e.g. --set norm=member"))
            key, raw = key.strip(), raw.strip()
            if key in OWN_OPTION:
                flag = OWN_OPTION[key]
                raise JobError(
                    refusal(
                        "--set",
                        item,
                        f"{flag} {raw}"
                        + (" (a trial's torch threads follow its CPUs)" * (key == "num_threads")),
                        why=f"{key!r} has its own option, which the job reads (to load the "
                        "data on the driver and size each trial) and which --set cannot change",
                    )
                )
            out[key] = parse_field(key, raw)
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


def check_int(name: str, value: int, lo: int, hi: int) -> None:
    """Refuse an option outside [lo, hi] (a huge int too: compared, never converted)."""
    if not lo <= value <= hi:
        raise JobError(refusal(name, value, f"an integer in [{lo}, {hi:,}]"))


def local_cpus() -> int:
    """The CPUs this process may use (its affinity mask; what a local Ray counts, short of a
    cgroup quota, which the runner's check after `ray.init` catches)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_cpus(per_trial: float, most: float, where: str) -> None:
    """Refuse `--cpus-per-trial` above the CPUs that `where` has at most."""
    if per_trial > most:
        raise JobError(
            refusal(
                "--cpus-per-trial",
                per_trial,
                f"a value <= {most:g}",
                why=f"{where} has at most {most:g} CPU(s); a trial asking for more waits for ever",
            )
        )


def check_address(address: str | None) -> None:
    """Refuse an explicit `--address` (host:port or ray://host:port) that nothing answers at,
    within seconds, before Ray starts and spends a minute retrying. `auto` is Ray's to find
    (`tune_jobs.resources.start_ray` words its failure)."""
    if address is None or address == "auto":
        return
    client = address.startswith("ray://")
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep:
        host, port = hostport, "10001" if client else "6379"  # Ray's defaults
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise JobError(refusal("--address", address, ADDRESS_ALLOWED, why="not host:port"))
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except TimeoutError:
        why = f"no answer from {host}:{port} within {CONNECT_TIMEOUT_S:g} s"
        raise JobError(refusal("--address", address, ADDRESS_ALLOWED, why=why)) from None
    except OSError as e:
        why = f"cannot connect to {host}:{port} ({e.strerror or e})"
        raise JobError(refusal("--address", address, ADDRESS_ALLOWED, why=why)) from None


def check_storage_path(
    path: str, option: str = "--storage-path", allowed: str = STORAGE_ALLOWED
) -> None:
    """A local `--storage-path` must be a folder this process can create folders in, or a
    path whose nearest existing parent is one (Ray creates the rest).

    Tried for real (a temporary folder, removed at once), not read from permission bits: root
    passes every permission check but not a read-only file system.
    """
    root = Path(path).expanduser().absolute()
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        where = "is" if probe == root else "is under"
        found = f"{where} {str(probe)!r}, a file, not a folder"
        raise JobError(refusal(option, path, allowed, why=found))
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".storage-check-", dir=probe))
    except OSError as e:
        where = "" if probe == root else f" ({str(probe)!r}, the nearest existing folder)"
        found = f"cannot create a folder there{where}: {e.strerror}"
        raise JobError(refusal(option, path, allowed, why=found)) from None


def check_mlflow_uri(uri: str) -> None:
    """`--mlflow-uri`: a tracking URI of a scheme MLflow serves (a local store's folder must
    be creatable), and the mlflow package installed; checked before Ray starts, without
    importing mlflow (a second's import)."""
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme not in MLFLOW_SCHEMES:
        why = f"not a URI of {list(MLFLOW_SCHEMES)}"
        raise JobError(refusal("--mlflow-uri", uri, MLFLOW_ALLOWED, why=why))
    if scheme in ("file", "sqlite"):
        path = rest.removeprefix("//")
        if not path.startswith("/"):
            why = f"{scheme}: needs an absolute path ({scheme}:///folder)"
            raise JobError(refusal("--mlflow-uri", uri, MLFLOW_ALLOWED, why=why))
        folder = path if scheme == "file" else str(Path(path).parent)
        check_storage_path(folder, "--mlflow-uri", MLFLOW_ALLOWED)
    if scheme in ("http", "https") and not rest.removeprefix("//").strip("/"):
        why = "no host"
        raise JobError(refusal("--mlflow-uri", uri, MLFLOW_ALLOWED, why=why))
    if importlib.util.find_spec("mlflow") is None:
        why = "the mlflow package is not installed"
        raise JobError(refusal("--mlflow-uri", uri, f"{uri} after {MLFLOW_INSTALL}", why=why))


# ----------------------------------------------------------------------------------------
# Grid spaces
# ----------------------------------------------------------------------------------------
def grid(values: Iterable[Any]) -> dict[str, list[Any]]:
    """`tune.grid_search` without importing Ray (the dict form Ray Tune reads)."""
    return {"grid_search": list(values)}


def swept_keys(space: dict[str, Any]) -> list[str]:
    """The keys of a space that a grid sweeps."""
    return [k for k, v in space.items() if isinstance(v, dict) and "grid_search" in v]


def swept_fields(space: dict[str, Any]) -> dict[str, str]:
    """Path -> config field of each field a grid sweeps: `seed` -> `seed`, and for a bundle
    (a grid of dicts that set several fields together, core.config) each field that every
    bundle sets and not to one value: `cell/optimizer` -> `optimizer`. The progress table
    looks values up by path in every trial (Ray's "best trial" line fails on a path a trial
    lacks), so a field only some bundles set (the SGD cells' momentum) is left out; the
    fields that are there say which cell a trial is. TensorBoard's hparams name the fields."""
    out: dict[str, str] = {}
    for key in swept_keys(space):
        values = space[key]["grid_search"]
        if not all(isinstance(v, dict) for v in values):
            out[key] = key
            continue
        for f in values[0]:
            if all(f in v for v in values) and len({repr(v[f]) for v in values}) > 1:
                out[f"{key}/{f}"] = f
    return out


def grid_configs(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Every config of a grid space (the cartesian product of its grid_search keys)."""
    keys = swept_keys(space)
    fixed = {k: v for k, v in space.items() if k not in keys}
    return [
        {**fixed, **dict(zip(keys, combo, strict=True))}
        for combo in itertools.product(*(space[k]["grid_search"] for k in keys))
    ]


def with_seeds(space: dict[str, Any], seeds: int) -> dict[str, Any]:
    """The space with `seed` as a grid dimension 0..seeds-1 (a fixed 0 for one seed)."""
    space = dict(space)
    space["seed"] = grid(range(seeds)) if seeds > 1 else 0
    return space


# ----------------------------------------------------------------------------------------
# The study record
# ----------------------------------------------------------------------------------------
@dataclass
class Study:
    """What a script hands to the runner: its name, its space, and how it is searched."""

    name: str
    space: dict[str, Any]
    asha: bool = False
    metric: str | list[str] = VAL_ACC  # what ASHA and the searcher rank by: validation only
    mode: str | list[str] = "max"
    num_samples: int = 1
    make_search_alg: Callable[[Path], Any] | None = None  # gets the local experiment folder
    # Extra files once results are written: after(exp_dir, results, run_alone), where
    # run_alone(fn, *args) runs fn as one task with a trial's resources (CPUs, GPUs) on the
    # cluster, now idle (the Tuner returned), and returns its result.
    after: Callable[[Path, Any, Callable[..., Any]], None] | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # merged into study.json
    # The script's own options as given (`--num-samples` -> 20); tune_jobs.cli fills it in.
    # They are recorded with the JobOptions that define the study and compared on --resume.
    script_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def trial_count(self) -> int:
        """Trials the study runs: `num_samples` per grid cell, or in all for a search."""
        cells = 1 if self.make_search_alg else len(grid_configs(self.space))
        return self.num_samples * cells


def validate_space(study: Study) -> int:
    """Validate every grid config (a search's fixed part is checked by its trials); returns
    the number of grid cells."""
    configs = grid_configs(study.space)
    if study.make_search_alg is None:
        for cfg in configs:
            TrialConfig.from_dict(cfg)
    return len(configs)


def check_study(study: Study, opts: JobOptions) -> None:
    """Every check that needs no Ray: the options, then `check_space`."""
    opts.check()
    check_space(study, opts)


def check_space(study: Study, opts: JobOptions) -> None:
    """The checks of a study built from checked options: `--set` against the sweep, ASHA
    against the metric, the data every trial names, each grid config."""
    check_overrides_not_swept(study, opts)
    opts.parsed_overrides()  # a value that is not of its field's type
    if uses_asha(study, opts) and isinstance(study.metric, list):
        raise JobError(
            refusal(
                "--asha",
                True,
                "--no-asha",
                why="ASHA ranks trials by one metric; a multi-objective search runs without it",
            )
        )
    check_data_source(study, opts)
    check_selection(study, opts)
    validate_space(study)


def check_data_source(study: Study, opts: JobOptions) -> None:
    """Every trial config names the dataset and folder the driver loads (--dataset,
    --data-dir): a study that sets either in its space otherwise would train on other data."""
    want = {"dataset": opts.dataset, "data_dir": opts.data_location()}
    for cfg in grid_configs(study.space):
        for key, value in want.items():
            got = cfg.get(key, getattr(TrialConfig, key))
            if got != value:
                raise JobError(
                    refusal(
                        key,
                        got,
                        f"{value!r}, from {OWN_OPTION[key]}",
                        why=f"the {study.name} study's trials would not use the data the "
                        "driver loads",
                    )
                )


def check_overrides_not_swept(study: Study, opts: JobOptions) -> None:
    """`--set` of a field the study sweeps is refused, whatever its value: the keys are read
    without parsing the values, so `--set alpha=abc` hears that alpha is swept, not that 'abc'
    is not a float."""
    swept = swept_keys(study.space)
    for item in opts.overrides:
        key = item.partition("=")[0].strip()
        if key in swept:
            values = study.space[key]["grid_search"]
            raise JobError(
                refusal(
                    "--set",
                    item,
                    f"--set of a field the study does not sweep (it sweeps {swept})",
                    why=f"{key} is swept by the {study.name} study (values {values})",
                )
            )


def selection(study: Study) -> tuple[str, str]:
    """(metric, mode) that selects trials: the study's metric, or a multi-objective search's
    first (accuracy) objective."""
    if isinstance(study.metric, list):
        return study.metric[0], study.mode[0]  # type: ignore[index]
    return study.metric, study.mode  # type: ignore[return-value]


def check_selection(study: Study, opts: JobOptions) -> None:
    """Selection reads validation metrics, never test ones; ASHA and a search need the
    validation split to be there."""
    metrics = study.metric if isinstance(study.metric, list) else [study.metric]
    leaked = [m for m in metrics if m.startswith("test_")]
    if leaked:
        raise JobError(
            refusal(
                "metric",
                leaked[0],
                "a validation metric (val_acc, val_loss, ...) or a cost",
                why="selecting on the test set would leak it into the result",
            )
        )
    selects = uses_asha(study, opts) or study.make_search_alg is not None
    no_val = [c for c in grid_configs(study.space) if not c.get("val_fraction", 0.0)]
    if selects and no_val:
        raise JobError(
            refusal(
                "--set",
                "val_fraction=0",
                "val_fraction > 0 (the default 0.1), or --no-asha for a grid study",
                why=f"{'the search' if study.make_search_alg else 'ASHA'} ranks trials by "
                f"{selection(study)[0]}, which needs a validation split",
            )
        )


def uses_asha(study: Study, opts: JobOptions) -> bool:
    """ASHA early stopping: the study's default unless `--asha/--no-asha` says otherwise."""
    return study.asha if opts.asha is None else opts.asha


def study_epochs(study: Study) -> int:
    """The most epochs any trial of the study plans (ASHA's max_t)."""
    return max(c.get("epochs", TrialConfig.epochs) for c in grid_configs(study.space))


def asha_rungs(grace_period: int, reduction_factor: float, max_t: int) -> tuple[int, ...]:
    """The epochs before the last at which ASHA may stop a trial: Ray's one-bracket rungs
    (ray.tune.schedulers.async_hyperband._Bracket, s = 0: grace * factor^k for k below
    int(log(max_t / grace) / log(factor) + 1)), each decided at the first epoch that reaches
    it. The trials measure their robustness there too, so that a trial ASHA stops has it from
    the epoch it stopped at (tests/tune_jobs check this against Ray's own bracket)."""
    grace = min(grace_period, max_t)
    n = int(math.log(max_t / grace) / math.log(reduction_factor) + 1)
    epochs = {math.ceil(grace * reduction_factor**k) for k in range(n)}
    return tuple(sorted(e for e in epochs if e < max_t))


def robustness_epochs(study: Study, opts: JobOptions) -> tuple[int, ...]:
    """The epochs at which every trial also measures its robustness: ASHA's rungs, or none."""
    if not uses_asha(study, opts):
        return ()
    return asha_rungs(opts.grace_period, opts.reduction_factor, study_epochs(study))


def study_record(
    study: Study, opts: JobOptions, state: str = STATE_FINISHED, **more: Any
) -> dict[str, Any]:
    """What `study.json` says about a study: which one, with which data, optimised how; its
    state (`core.columns.STUDY_STATES`), the options and space it was started with (what
    `--resume` compares), the command that resumes it and the process that runs it. `more`
    adds what only the runner can say: what produced the study (core.columns.PROVENANCE, from
    core.provenance, which asks torch about CUDA: this module imports neither torch nor Ray)."""
    info = {
        "study": study.name,
        "name": opts.experiment_name,
        "dataset": opts.dataset,
        "smoke": opts.smoke,
        "preset": opts.preset,
        "metric": study.metric,
        "mode": study.mode,
        STUDY_SELECTION_METRIC: selection(study)[0],
        STUDY_SELECTION_MODE: selection(study)[1],
        STUDY_ROBUSTNESS_EPOCHS: list(robustness_epochs(study, opts)),
        **study.info,
    }
    if study.make_search_alg is not None:
        info["optuna_study"] = opts.experiment_name  # the Optuna study in optuna.db
    info |= {
        STUDY_STATE: state,
        TRIALS: study.trial_count,
        STUDY_OPTIONS: defining_options(study, opts),
        STUDY_SPACE: plain(study.space),
        RESUME_COMMAND: resume_command(study, opts),
        DRIVER: {"host": socket.gethostname(), "pid": os.getpid()},
        **more,
    }
    return info


def write_study_json(
    folder: Path, study: Study, opts: JobOptions, state: str = STATE_FINISHED, **more: Any
) -> Path:
    path = folder / STUDY_FILE
    path.write_text(json.dumps(study_record(study, opts, state, **more), indent=2))
    return path


# ----------------------------------------------------------------------------------------
# What defines a study, and --resume
# ----------------------------------------------------------------------------------------
# The JobOptions fields that change what a study computes: recorded when it starts and compared
# on --resume. The others (resources, concurrency, retries, address, storage, name, where the
# trials are also logged: --mlflow-uri) may differ.
DEFINING_OPTIONS = (
    "preset",  # --smoke is --preset smoke
    "dataset",
    "data_dir",
    "epochs",
    "seeds",
    "asha",
    "grace_period",
    "reduction_factor",
    "overrides",
)
# Space keys that follow from options allowed to differ on --resume (--cpus-per-trial).
RESOURCE_KEYS = ("num_threads",)


def flag_of(field_name: str) -> str:
    """The command-line flag of a JobOptions field: `--data-dir`, `--set`."""
    f = {f.name: f for f in dataclasses.fields(JobOptions)}[field_name]
    return f.metadata.get("flag", "--" + field_name.replace("_", "-"))


def plain(value: Any) -> Any:
    """`value` as JSON reads it back (tuples become lists), so a record compares equal."""
    return json.loads(json.dumps(value))


def defining_options(study: Study, opts: JobOptions) -> dict[str, Any]:
    """Flag -> value of every option that defines the study, the script's own included;
    `--data-dir` as an absolute path (a relative one may be given from another folder)."""
    out: dict[str, Any] = {}
    for name in DEFINING_OPTIONS:
        value = getattr(opts, name)
        if name == "data_dir" and value is not None and not is_uri(value):
            value = str(Path(value).expanduser().resolve())
        out[flag_of(name)] = list(value) if name == "overrides" else value
    return plain({**out, **study.script_options})


def _shown(flag: str, value: Any) -> str:
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return flag if value else "--no-" + flag.removeprefix("--")
    return f"{flag} {value}"


def _set_values(items: Iterable[str]) -> dict[str, tuple[str, Any]]:
    """`--set` items by key: (the item as given, its value typed like the field)."""
    out = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            value = parse_field(key.strip(), raw.strip())
        except Exception:  # a saved item the current code no longer reads: compare the text
            value = raw.strip()
        out[key.strip()] = (item, value)
    return out


def option_differences(saved: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Each defining option whose value differs from the saved study's, as
    `--epochs 4 (saved: not set)`, `--set lr=0.5 (saved: not set)`."""
    out = []
    for flag in dict.fromkeys([*given, *saved]):
        now, then = given.get(flag), saved.get(flag)
        if flag == flag_of("overrides"):
            now_set, then_set = _set_values(now or ()), _set_values(then or ())
            for key in dict.fromkeys([*now_set, *then_set]):
                a, b = now_set.get(key), then_set.get(key)
                if a is None or b is None or a[1] != b[1]:
                    shown_now = f"{flag} {a[0]}" if a else f"{flag} {key}=... not given"
                    out.append(f"{shown_now} (saved: {f'{flag} {b[0]}' if b else 'not set'})")
        elif now != then:
            out.append(f"{_shown(flag, now)} (saved: {_shown(flag, then)})")
    return out


def check_resume(saved: dict[str, Any], study: Study, opts: JobOptions) -> None:
    """`--resume` continues the study it was started as: options that change what is computed
    must be the ones saved (each difference is named), and so must the parameter space."""
    if STUDY_OPTIONS not in saved:  # a study recorded before options were: nothing to compare
        return
    then = dict(saved[STUDY_OPTIONS])
    if "--smoke" in then:  # recorded before presets: --smoke was the only one
        then.setdefault(flag_of("preset"), "smoke" if then.pop("--smoke") else "full")
    diffs = option_differences(then, defining_options(study, opts))
    if not diffs:
        then = {k: v for k, v in saved.get(STUDY_SPACE, {}).items() if k not in RESOURCE_KEYS}
        now = {k: v for k, v in plain(study.space).items() if k not in RESOURCE_KEYS}
        keys = sorted(k for k in {*then, *now} if then.get(k) != now.get(k))
        if keys:
            diffs = [f"the parameter space differs in {keys} (has the study's code changed?)"]
    if diffs:
        raise JobError(
            "--resume: options differ from the saved study: "
            + ", ".join(diffs)
            + "; resume with the same options, or start a new --name"
        )


def resume_command(study: Study, opts: JobOptions) -> str:
    """The command line that continues the study: its script, the options that define it
    (those not at their default), --resume, --name and --storage-path."""
    defaults = {flag_of(f.name): f.default for f in dataclasses.fields(JobOptions)}
    args = ["python", f"tune_jobs/{study.name}.py"]
    for flag, value in defining_options(study, opts).items():
        if flag == flag_of("overrides"):
            args += [a for item in value for a in (flag, item)]
        elif isinstance(value, bool):
            if value != defaults.get(flag):
                args.append(_shown(flag, value))
        elif value is not None and value != defaults.get(flag):
            args += [flag, str(value)]
    args += ["--resume", "--name", opts.experiment_name, "--storage-path", opts.storage_root()]
    return shlex.join(args)
