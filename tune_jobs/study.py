"""A study and its grid: the `Study` a script hands to the runner, the grid helpers it builds
its space with (`grid`, `with_seeds`, `grid_configs`), and the checks of a study against the
options it was built from, all without Ray or torch (`tune.grid_search`'s dict form is written
by hand). Also what the study's options make of it: ASHA or not, its rungs, the epochs at
which every trial measures its robustness, the metric that selects trials."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.columns import VAL_ACC
from core.config import TrialConfig
from core.errors import refusal
from tune_jobs.errors import JobError
from tune_jobs.options import OWN_OPTION, JobOptions, set_items


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
    # run_alone(fn, *args) runs fn with a trial's resources (CPUs, GPUs) on the cluster, now
    # idle (the Tuner returned), and returns its result (tune_jobs.alone.run_alone_with).
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
    for key, item, _ in set_items(opts.overrides):
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
