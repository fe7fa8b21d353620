"""Parameter importances of a search study: from its Optuna storage, else a simple fallback.

- With `optuna.db`: optuna.importance with the PED-ANOVA evaluator (pure numpy; fANOVA would
  need scikit-learn, which is not a dependency), on the accuracy objective (for a
  multi-objective study: the objective whose name in study.json contains 'acc', else the
  first maximised one). The storage is copied to a temporary folder first, so the
  experiment's own file is never opened for writing.
- Without it (or when Optuna fails): the fallback is, per varying config column, the share of
  the variance of final validation accuracy (the objective) explained by grouping the trials by
  that column alone
  (eta squared; numeric columns with more than 5 values are cut into 5 quantile bins). It
  ignores interactions and is not normalised: the columns need not sum to 1.
- Fewer than MIN_TRIALS usable trials: no importances, and the page says so.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.tidy import fmt_value, is_usable, varying_columns
from core.columns import OPTUNA_DB, SELECTION_COLUMN

MIN_TRIALS = 10
ACC = SELECTION_COLUMN  # the search's objective: validation accuracy


@dataclass
class Importances:
    values: pd.Series | None  # importance per parameter; None when not computable
    method: str  # how they were computed (axis title)
    notes: list[str] = field(default_factory=list)


def param_importances(
    results: pd.DataFrame, optuna_db: Path | None = None, meta: dict[str, Any] | None = None
) -> Importances:
    """Importances from `optuna_db` when given and usable, else the eta-squared fallback."""
    meta = meta or {}
    notes: list[str] = []
    if optuna_db is not None:
        try:
            return _from_optuna(optuna_db, meta)
        except Exception as exc:  # Optuna/SQLite failures must not kill the report
            notes.append(f"Optuna importances failed ({type(exc).__name__}: {exc}); fallback used")
    else:
        notes.append("no optuna.db in the folder: fallback importances (eta squared)")
    fb = eta_squared(results)
    fb.notes[:0] = notes
    return fb


def _maximised(direction: Any) -> bool:
    """StudyDirection.MAXIMIZE (an IntEnum: str() gives '2', so compare by name)."""
    return getattr(direction, "name", str(direction)).upper() == "MAXIMIZE"


def _objective_index(directions: list[Any], meta: dict[str, Any]) -> int:
    names = [str(o) for o in meta.get("objectives", [])]
    for i, name in enumerate(names[: len(directions)]):
        if "acc" in name:
            return i
    for i, d in enumerate(directions):
        if _maximised(d):
            return i
    return 0


def _from_optuna(db: Path, meta: dict[str, Any]) -> Importances:
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / OPTUNA_DB
        shutil.copyfile(db, copy)
        log = db.with_name(db.name + "-wal")  # trials SQLite has not folded into the file yet
        if log.exists():
            shutil.copyfile(log, copy.with_name(copy.name + "-wal"))
        url = f"sqlite:///{copy}"
        name = meta.get("optuna_study")
        if name is None:
            names = optuna.get_all_study_names(storage=url)
            if len(names) != 1:
                raise ValueError(f"study.json has no optuna_study and optuna.db holds {names}")
            name = names[0]
        study = optuna.load_study(study_name=name, storage=url)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(complete) < MIN_TRIALS:
            return Importances(
                None,
                "",
                [
                    f"too few completed trials ({len(complete)}) in the Optuna study {name!r} "
                    f"for parameter importances: at least {MIN_TRIALS} are needed"
                ],
            )
        k = _objective_index(list(study.directions), meta)
        # PED-ANOVA explains *low* target values: negate a maximised objective
        sign = -1.0 if _maximised(study.directions[k]) else 1.0

        def target(t: optuna.trial.FrozenTrial) -> float:
            return sign * t.values[k]

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = get_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(), target=target
            )
    series = pd.Series(values, dtype=float)
    what = meta.get("objectives", [None] * (k + 1))[k] if meta.get("objectives") else k
    note = f"Optuna study {name!r}, {len(complete)} completed trials, objective {what}"
    return Importances(series, "importance (optuna PED-ANOVA, normalised)", [note])


def eta_squared(results: pd.DataFrame, metric: str = ACC) -> Importances:
    """Fallback: per varying config column, between-group share of the variance of `metric`."""
    df = results[is_usable(results, metric)]
    method = f"share of {metric} variance explained (eta squared, one column at a time)"
    if len(df) < MIN_TRIALS:
        return Importances(
            None,
            method,
            [
                f"too few usable trials ({len(df)}) for parameter importances: at least "
                f"{MIN_TRIALS} are needed"
            ],
        )
    y = df[metric].astype(float)
    total = float(((y - y.mean()) ** 2).sum())
    cols = varying_columns(df)
    if total == 0 or not cols:
        why = "every trial has the same accuracy" if total == 0 else "no config column varies"
        return Importances(None, method, [f"no parameter importances: {why}"])
    out = {}
    for c in cols:
        x = df[c]
        if pd.api.types.is_numeric_dtype(x) and x.nunique() > 5:
            key = pd.qcut(x, 5, duplicates="drop").astype(str)
        else:
            key = x.astype(object).map(fmt_value)
        means = y.groupby(key).transform("mean")
        out[c] = float(((means - y.mean()) ** 2).sum()) / total
    return Importances(pd.Series(out), method, [f"{len(df)} usable trials"])
