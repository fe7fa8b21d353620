"""What a study is and the options every study script takes, checked without Ray or torch.

A study script builds its parameter space from `JobOptions` with `grid` and `with_seeds`, wraps
it in a `Study` and hands both to `tune_jobs.cli.cli`. Everything here can be imported, and
every study's space built and checked, without loading Ray or torch (tests/tune_jobs checks it):
that is what lets a bad option be refused in a moment, before Ray starts.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import DATASETS, TrialConfig, parse_field
from core.errors import refusal

# The smoke preset: minutes on 2 CPU cores, the same files as a full run.
SMOKE = {
    "arch": "simple_cnn",
    "train_subset": 500,
    "test_subset": 250,
    "epochs": 2,
    # robustness at smoke size: under 20% of the trial (benchmarks/robustness_cost.py)
    "corruption_subset": 10,
    "ood_subset": 100,
}


class JobError(Exception):
    """A bad option or state found before (or instead of) starting any trial."""


class StudyInterrupted(Exception):
    """The Tuner stopped before every trial finished; the experiment can be resumed."""


def _option(default: Any, help: str, flag: str | None = None) -> Any:
    """A JobOptions field: its default, its `--help` text and, if not `--field-name`, its flag."""
    metadata = {"help": help} if flag is None else {"help": help, "flag": flag}
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(kw_only=True)
class JobOptions:
    """The options every study script takes; `tune_jobs.cli` makes one command-line option of
    each field (`--field-name`, or `flag` from the field's metadata) with the field's help."""

    smoke: bool = _option(
        False, "Tiny subset, simple_cnn, 2 epochs, reduced grid: minutes on 2 CPUs."
    )
    dataset: str = _option("cifar10", f"One of {list(DATASETS)}.")
    data_dir: str | None = _option(None, "Dataset root (else $ENSEMBLE_DATA_DIR, else download).")
    epochs: int | None = _option(None, "Epochs per trial (default: the study's).")
    seeds: int = _option(1, "Replicates per cell: seed becomes a grid dimension 0..N-1.")
    address: str | None = _option(
        None, "Ray address; 'auto' joins a running cluster (default: start Ray locally)."
    )
    storage_path: str = _option("~/ray_results", "Experiment root: local folder, s3:// or gs://.")
    name: str | None = _option(None, "Experiment name (default: the study's name).")
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
    overrides: tuple[str, ...] = _option(
        (), "Fix a config field, e.g. --set norm=member (repeatable).", flag="--set"
    )

    def check(self) -> None:
        """Option errors that need no Ray: one message naming option, value and what is allowed."""
        if self.dataset not in DATASETS:
            raise JobError(refusal("--dataset", self.dataset, DATASETS))
        if self.seeds < 1:
            raise JobError(refusal("--seeds", self.seeds, "an integer >= 1"))
        if self.epochs is not None and self.epochs < 1:
            raise JobError(refusal("--epochs", self.epochs, "an integer >= 1"))
        if self.cpus_per_trial <= 0:
            raise JobError(refusal("--cpus-per-trial", self.cpus_per_trial, "a number > 0"))
        g = self.gpus_per_trial
        if g is not None and (g < 0 or (g > 1 and g != int(g))):
            raise JobError(refusal("--gpus-per-trial", g, "a fraction in [0, 1] or a whole number"))
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise JobError(refusal("--max-concurrent", self.max_concurrent, "an integer >= 1"))
        if self.grace_period < 1:
            raise JobError(refusal("--grace-period", self.grace_period, "an integer >= 1"))
        if self.reduction_factor <= 1:
            raise JobError(refusal("--reduction-factor", self.reduction_factor, "a number > 1"))
        if self.data_dir is not None and not is_uri(self.data_dir):
            if not Path(self.data_dir).expanduser().exists():
                raise JobError(
                    refusal("--data-dir", self.data_dir, "an existing folder", why="no such folder")
                )

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
        for item in self.overrides:
            key, sep, raw = item.partition("=")
            if not sep:
                raise JobError(refusal("--set", item, "key=value, e.g. --set norm=member"))
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


# ----------------------------------------------------------------------------------------
# Grid spaces
# ----------------------------------------------------------------------------------------
def grid(values: Iterable[Any]) -> dict[str, list[Any]]:
    """`tune.grid_search` without importing Ray (the dict form Ray Tune reads)."""
    return {"grid_search": list(values)}


def swept_keys(space: dict[str, Any]) -> list[str]:
    """The keys of a space that a grid sweeps."""
    return [k for k, v in space.items() if isinstance(v, dict) and "grid_search" in v]


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
    metric: str | list[str] = "test_acc"
    mode: str | list[str] = "max"
    num_samples: int = 1
    make_search_alg: Callable[[Path], Any] | None = None  # gets the local experiment folder
    after: Callable[[Path, Any], None] | None = None  # extra files once results are written
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # merged into study.json

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
    """Every check that needs no Ray: the options, `--set` against the sweep, ASHA against the
    metric, each grid config."""
    opts.check()
    swept = swept_keys(study.space)
    clash = sorted(set(opts.parsed_overrides()) & set(swept))
    if clash:
        given = next(item for item in opts.overrides if item.partition("=")[0].strip() == clash[0])
        raise JobError(
            refusal(
                "--set",
                given,
                f"a field the study does not sweep (swept: {swept})",
                why=f"{clash[0]!r} is swept by the {study.name} study",
            )
        )
    if uses_asha(study, opts) and isinstance(study.metric, list):
        raise JobError(
            refusal(
                "--asha",
                True,
                "--no-asha",
                why="ASHA ranks trials by one metric; a multi-objective search runs without it",
            )
        )
    validate_space(study)


def uses_asha(study: Study, opts: JobOptions) -> bool:
    """ASHA early stopping: the study's default unless `--asha/--no-asha` says otherwise."""
    return study.asha if opts.asha is None else opts.asha


def study_record(study: Study, opts: JobOptions) -> dict[str, Any]:
    """What `study.json` says about a study: which one, with which data, optimised how."""
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
    return info


def write_study_json(folder: Path, study: Study, opts: JobOptions) -> Path:
    path = folder / "study.json"
    path.write_text(json.dumps(study_record(study, opts), indent=2))
    return path
