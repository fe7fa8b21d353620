"""Read an experiment folder, check it against docs/results_schema.md and tidy it."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.errors import ReportInputError
from analysis.schema import HISTORY_REQUIRED, NUMERIC_REQUIRED, RESULTS_REQUIRED, STUDIES
from analysis.tidy import tidy_history, tidy_results
from core.columns import (
    DRIVER,
    HISTORY_FILE,
    OPTUNA_DB,
    PARETO_FILE,
    RESULTS_FILE,
    RESUME_COMMAND,
    STATE_FINISHED,
    STATE_INTERRUPTED,
    STATE_RUNNING,
    STUDY,
    STUDY_FILE,
    STUDY_STATE,
    TRIAL_ID,
    TRIALS,
    TRIALS_FINISHED,
)

# Ray Tune's own record of a running or stopped experiment, in the experiment folder.
RAY_STATE_GLOB = "experiment_state-*.json"


@dataclass
class Experiment:
    """A loaded, validated experiment folder."""

    path: Path
    results: pd.DataFrame  # tidy: plus outcome, model, regime
    history: pd.DataFrame | None  # tidy, per-trial columns from results; None when absent
    meta: dict[str, Any] = field(default_factory=dict)  # study.json ({} when absent)
    pareto: pd.DataFrame | None = None  # pareto_front.parquet
    optuna_db: Path | None = None  # optuna.db
    notes: list[str] = field(default_factory=list)  # what was absent but optional

    @property
    def study(self) -> str | None:
        """Study kind from study.json, else the results' single `study` value, else None."""
        name = self.meta.get("study")
        if name is None and STUDY in self.results:
            values = self.results[STUDY].dropna().unique()
            name = values[0] if len(values) == 1 else None
        return str(name) if name in STUDIES else None


def _read_parquet(path: Path, problems: list[str]) -> pd.DataFrame | None:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # any reader failure is an input problem
        problems.append(f"{path.name} could not be read as parquet ({type(exc).__name__}: {exc})")
        return None


def _check_columns(
    df: pd.DataFrame, name: str, required: tuple[str, ...], problems: list[str]
) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        problems.append(f"{name} is missing required column(s) {missing}")
    bad = [
        c
        for c in NUMERIC_REQUIRED
        if c in required and c in df.columns and not pd.api.types.is_numeric_dtype(df[c])
    ]
    if bad:
        problems.append(f"{name} column(s) {bad} must be numeric")


def _record(path: Path) -> dict[str, Any]:
    """study.json as a dict; {} when absent or unreadable (the caller says what is missing)."""
    try:
        record = json.loads((path / STUDY_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _driver_alive(driver: Any) -> bool:
    """Whether the process that runs the study is alive (known only on its own machine)."""
    if not isinstance(driver, dict) or driver.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(driver["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _no_results(path: Path) -> str:
    """Why a folder has no results.parquet: a study that is running, was interrupted or
    stopped (from the study record, or Ray Tune's state alone), or not an experiment at all."""
    record = _record(path)
    state = record.get(STUDY_STATE)
    ray_state = any(path.glob(RAY_STATE_GLOB))
    where = f"study {record.get('name', path.name)!r} in {str(path)!r}"
    command = record.get(RESUME_COMMAND)
    resume = (
        f"resume it with: {command}"
        if command
        else ("resume it with the study script's --resume (same --name and --storage-path)")
    )
    if state == STATE_INTERRUPTED:
        done = record.get(TRIALS_FINISHED)
        of = (
            f" with {done} of {record.get(TRIALS, '?')} trial(s) finished"
            if done is not None
            else ""
        )
        return f"{where} was interrupted{of}, so it has no {RESULTS_FILE} yet; {resume}"
    if state == STATE_RUNNING:
        if _driver_alive(record.get(DRIVER)):
            pid = record[DRIVER]["pid"]
            return (
                f"{where} is still running (process {pid}); {RESULTS_FILE} is written when "
                "it ends: build the report then"
            )
        return f"{where} stopped before it finished, so it has no {RESULTS_FILE}; {resume}"
    if ray_state and state != STATE_FINISHED:
        return (
            f"{where} holds Ray Tune's state of a study that did not finish (no "
            f"{RESULTS_FILE}); {resume}"
        )
    return (
        f"no results in {str(path)!r}: {RESULTS_FILE} is missing "
        f"(a study writes {RESULTS_FILE} and {HISTORY_FILE} into its experiment folder)"
    )


def _unfinished_run(record: dict[str, Any]) -> list[str]:
    """A note when the study has tables but its record says a later run has not finished
    (an --extend interrupted, say): the tables are those of its last finished run."""
    state = record.get(STUDY_STATE, STATE_FINISHED)
    if state == STATE_FINISHED:
        return []
    command = record.get(RESUME_COMMAND)
    return [
        f"{STUDY_FILE} says the study is {state}: these tables hold the trials of its last "
        f"finished run, not the {record.get(TRIALS, '?')} it runs when it finishes"
        + (f"; resume it with: {command}" if command else "")
    ]


def load_experiment(experiment_dir: str | Path) -> Experiment:
    """Load `experiment_dir`; raise ReportInputError naming everything missing or malformed
    (all problems in one message)."""
    path = Path(experiment_dir)
    if not path.exists():
        raise ReportInputError(f"experiment folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise ReportInputError(f"{str(path)!r} is not a folder (expected an experiment folder)")
    res_path = path / RESULTS_FILE
    if not res_path.is_file():
        raise ReportInputError(_no_results(path))
    problems: list[str] = []
    results = _read_parquet(res_path, problems)
    if results is not None:
        if results.empty:
            problems.append(f"{RESULTS_FILE} has no rows (no trial reported)")
        _check_columns(results, RESULTS_FILE, RESULTS_REQUIRED, problems)
    history = None
    notes: list[str] = []
    hist_path = path / HISTORY_FILE
    if hist_path.is_file():
        history = _read_parquet(hist_path, problems)
        if history is not None and history.empty:  # e.g. every trial errored before epoch 1
            notes.append(f"{HISTORY_FILE} has no rows: learning curves are not drawn")
            history = None
        if history is not None:
            _check_columns(history, HISTORY_FILE, HISTORY_REQUIRED, problems)
    else:
        notes.append(f"no {HISTORY_FILE}: learning curves are not drawn")
    meta: dict[str, Any] = {}
    meta_path = path / STUDY_FILE
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            problems.append(f"{STUDY_FILE} is not a valid JSON object ({exc})")
    notes += _unfinished_run(meta)
    pareto = None
    if (path / PARETO_FILE).is_file():
        pareto = _read_parquet(path / PARETO_FILE, problems)
        if pareto is not None and TRIAL_ID not in pareto:
            problems.append(f"{PARETO_FILE} is missing required column(s) [{TRIAL_ID!r}]")
    if problems:
        raise ReportInputError(f"cannot report on {str(path)!r}: " + "; ".join(problems))
    assert results is not None
    tidy = tidy_results(results)
    if history is not None:
        history = tidy_history(history, results)
    if pareto is not None:
        pareto = pareto.assign(**{TRIAL_ID: pareto[TRIAL_ID].astype(str)})
    db = path / OPTUNA_DB
    return Experiment(
        path=path,
        results=tidy,
        history=history,
        meta=meta,
        pareto=pareto,
        optuna_db=db if db.is_file() else None,
        notes=notes,
    )
