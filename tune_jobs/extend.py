"""`--extend`: more trials for a finished study, planned without Ray.

A finished study grows by a larger `--seeds` (or by a grid its script now makes larger, a
superset of the saved one), a search by a larger `--num-samples`. Every other option that
defines the study must be the saved one (`tune_jobs.resume.option_differences`, as `--resume`
compares them), nothing may shrink, and every saved cell stays in the grid.

How the new trials run on Ray Tune 2.60. A Tune experiment cannot grow: `Tuner.restore` brings
back the saved trials and the saved searcher but never adds grid points or samples (Ray issue
#42221), and a second `Tuner` in the experiment's own folder would write a second experiment
state beside the first one. So each extension is a Tune experiment of its own in a sub-folder
of the study's (`<experiment>/extend-1/`, `extend-2/`, ...) that runs only the new trials:

* a grid: the cells the saved grid lacks, as one grid over a bundle key (`EXTENSION_CELL`, one
  dict of swept values per new cell; a grown grid's new cells need not be a product);
* a search: the added samples, its searcher built on the same Optuna study in `optuna.db`
  (Ray's `OptunaSearch` creates its study with `load_if_exists=True`), so the sampler sees every
  earlier trial.

The finished trials' folders are not touched. When the extension ends the runner appends the
new trials' rows to `results.parquet` and `history.parquet`, the saved rows kept as they are,
and study.json lists the extension (`core.columns.EXTENSIONS`, `Extension.record`). A fresh ASHA
scheduler ranks the new trials among themselves. `--resume` of an interrupted extension (or of
one whose trials errored) restores its sub-folder (`tune_run`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from core.columns import EXTENSIONS, PROVENANCE, STUDY_SPACE, TRIALS
from core.config import merge_bundles
from core.errors import refusal
from tune_jobs.errors import JobError
from tune_jobs.options import JobOptions
from tune_jobs.resume import (
    RESOURCE_KEYS,
    defining_options,
    json_round_trip,
    option_differences,
    saved_options,
    space_differences,
)
from tune_jobs.study import Study, grid, grid_configs, swept_keys

# The options an extension may raise (a grid's replicates, a search's samples); the other
# defining options must be the saved ones.
EXTENDABLE = ("--seeds", "--num-samples")
# The bundle key of an extension's grid: one value per new cell, its swept fields (a bundle's
# fields merged in), which TrialConfig.from_dict merges into the trial's config.
EXTENSION_CELL = "extension_cell"
# Keys of one extension's record in study.json's EXTENSIONS list (PROVENANCE too).
WHEN = "when"  # when it started, UTC, ISO 8601
FOLDER = "folder"  # its Tune experiment, a sub-folder of the experiment folder
GREW = "options"  # flag -> [saved, given] of each extendable option that grew
TRIALS_FROM_TO = "trials"  # [the study's trials before, after]
SPACE = "space"  # the parameter space of its new trials (what its Tuner ran)


@dataclass(frozen=True)
class Extension:
    """What one `--extend` adds: its sub-folder, the options that grew, the new trials' space."""

    folder: str
    grew: dict[str, list[Any]]
    space: dict[str, Any]
    num_samples: int  # a search's added samples; 1 for a grid
    trials_before: int
    trials_after: int

    def study(self, study: Study) -> Study:
        """The study of the new trials alone: what the extension's Tuner runs."""
        return dataclasses.replace(study, space=self.space, num_samples=self.num_samples)

    def record(self, provenance: dict[str, Any] | None) -> dict[str, Any]:
        """Its entry in study.json's EXTENSIONS list."""
        return {
            WHEN: datetime.now(timezone.utc).isoformat(timespec="seconds"),
            FOLDER: self.folder,
            GREW: self.grew,
            TRIALS_FROM_TO: [self.trials_before, self.trials_after],
            SPACE: json_round_trip(self.space),
            PROVENANCE: provenance,
        }


@dataclass(frozen=True)
class TuneRun:
    """The Tune experiment one run of a study runs or restores: the study's own folder, or an
    extension's sub-folder; `trials` it holds when finished, `space` its parameter space."""

    root: str  # RunConfig.storage_path
    name: str  # RunConfig.name
    trials: int
    space: dict[str, Any]

    @property
    def path(self) -> str:
        return f"{self.root}/{self.name}"


def tune_run(
    saved: dict[str, Any], study: Study, opts: JobOptions, extension: Extension | None
) -> TuneRun:
    """Where this run's Tuner runs: a new extension's sub-folder; on `--resume` of a study that
    was extended, its last extension's (the only one that can be unfinished or hold errored
    trials: a study is extended only once every trial finished); else the study's folder."""
    exp_path = f"{opts.storage_root()}/{opts.experiment_name}"
    if extension is not None:
        new = extension.trials_after - extension.trials_before
        return TuneRun(exp_path, extension.folder, new, extension.space)
    last = (saved.get(EXTENSIONS) or [None])[-1] if opts.resume else None
    if last is not None:
        before, after = last[TRIALS_FROM_TO]
        return TuneRun(exp_path, last[FOLDER], after - before, last[SPACE])
    return TuneRun(opts.storage_root(), opts.experiment_name, study.trial_count, study.space)


def plan_extension(saved: dict[str, Any], study: Study, opts: JobOptions) -> Extension:
    """The extension `opts` asks of the finished study `saved` (its study.json): refused
    (JobError, one line) when a defining option other than EXTENDABLE differs, one of those
    shrinks, a saved cell is dropped, or nothing would be added."""
    then = saved_options(saved) or {}
    now = defining_options(study, opts)
    fixed_then = {k: v for k, v in then.items() if k not in EXTENDABLE}
    diffs = option_differences(fixed_then, {k: v for k, v in now.items() if k not in EXTENDABLE})
    if diffs:
        raise JobError(
            "--extend: options differ from the saved study: "
            + ", ".join(diffs)
            + f"; only {' and '.join(EXTENDABLE)} may grow: extend with the others as saved, "
            "or start a new --name"
        )
    grew = {}
    for flag in EXTENDABLE:
        if flag in then and flag in now and now[flag] != then[flag]:
            if now[flag] < then[flag]:
                raise JobError(_not_more(flag, now[flag], then[flag], "may not shrink the study"))
            grew[flag] = [then[flag], now[flag]]
    before = int(saved.get(TRIALS, 0))
    if study.make_search_alg is not None:
        space, samples = _search_extension(saved, study, then, before)
    else:
        space, samples = _grid_extension(saved, study, then, now), 1
    n = len(saved.get(EXTENSIONS, [])) + 1
    return Extension(f"extend-{n}", grew, space, samples, before, study.trial_count)


def _not_more(flag: str, given: Any, saved: Any, why: str) -> str:
    return refusal(
        flag,
        given,
        f"{flag} above {saved}, the other options as saved",
        why=f"--extend keeps every finished trial and adds new ones, so it needs more than the "
        f"saved {saved}: it {why}",
    )


def _search_extension(
    saved: dict[str, Any], study: Study, then: dict[str, Any], before: int
) -> tuple[dict[str, Any], int]:
    """(space, samples) of a search's extension: the same space, the samples it adds."""
    diffs = space_differences(saved, study)
    if diffs:
        raise JobError(f"--extend: {diffs[0]}; extend with the study's own space")
    added = study.num_samples - before
    if added <= 0:
        flag = "--num-samples"
        why = f"would run {study.num_samples} sample(s), as many as the saved study ran"
        raise JobError(_not_more(flag, study.script_options.get(flag), then.get(flag), why))
    return study.space, added


def _grid_extension(
    saved: dict[str, Any], study: Study, then: dict[str, Any], now: dict[str, Any]
) -> dict[str, Any]:
    """The space of a grid's new cells: the study's fixed part and one EXTENSION_CELL grid."""
    cells = new_cells(saved.get(STUDY_SPACE, {}), study.space)
    if not cells:
        why = "would run the saved grid's cells only (its grid has not grown)"
        raise JobError(_not_more("--seeds", now.get("--seeds"), then.get("--seeds"), why))
    swept = swept_keys(study.space)
    fixed = {k: v for k, v in study.space.items() if k not in swept}
    return {**fixed, EXTENSION_CELL: grid(merge_bundles({k: c[k] for k in swept}) for c in cells)}


def new_cells(saved_space: dict[str, Any], space: dict[str, Any]) -> list[dict[str, Any]]:
    """The cells (configs) of `space` that `saved_space` lacks, in grid order; a space that
    drops a saved cell is refused (an extension keeps every trial)."""
    saved = {_cell_key(c) for c in grid_configs(saved_space)}
    cells = grid_configs(space)
    keys = [_cell_key(c) for c in cells]
    dropped = saved - set(keys)
    if dropped:
        raise JobError(
            f"--extend: the parameter space lacks {len(dropped)} of the saved study's "
            f"{len(saved)} cell(s) (has the study's code changed?); an extension keeps every "
            "cell: extend with the space it was started with, or start a new --name"
        )
    return [c for c, k in zip(cells, keys, strict=True) if k not in saved]


def _cell_key(cfg: dict[str, Any]) -> str:
    """A cell as comparable text: JSON as study.json holds it, resources left out."""
    plain = {k: v for k, v in json_round_trip(cfg).items() if k not in RESOURCE_KEYS}
    return json.dumps(plain, sort_keys=True)
