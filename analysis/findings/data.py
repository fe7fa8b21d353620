"""A study's committed results, findings/<study>/results.parquet, and the rows of its cells."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.findings.statistics import (
    BEST_VAL_LOSS,
    GAP,
    TRAIN_ACC,
    VAL_ACC,
    VAL_LOSS,
    VAL_LOSS_RISE,
)
from analysis.tidy import is_usable, tidy_results
from core import columns as C

FINDINGS = Path(__file__).resolve().parents[2] / "findings"


def committed(study: str, root: Path = FINDINGS) -> bool:
    """Whether root/<study>/ holds a study's committed results."""
    return (root / study / C.RESULTS_FILE).is_file()


def results(study: str, root: Path = FINDINGS) -> pd.DataFrame:
    """The tidy results of findings/<study>/, with the columns computed here."""
    df = tidy_results(pd.read_parquet(root / study / C.RESULTS_FILE))
    if TRAIN_ACC in df and VAL_ACC in df:
        df[GAP] = df[TRAIN_ACC] - df[VAL_ACC]
    if VAL_LOSS in df and BEST_VAL_LOSS in df:
        df[VAL_LOSS_RISE] = df[VAL_LOSS] - df[BEST_VAL_LOSS]
    return df


def rows_where(df: pd.DataFrame, **values: object) -> pd.Series:
    """Rows whose columns equal `values` (numbers compared to float tolerance)."""
    mask = pd.Series(True, index=df.index)
    for k, v in values.items():
        if isinstance(v, float | int) and not isinstance(v, bool):
            mask &= np.isclose(pd.to_numeric(df[k], errors="coerce"), float(v))
        else:
            mask &= df[k].astype(object).eq(v)
    return mask


def values(df: pd.DataFrame, column: str) -> list[float]:
    """The distinct numbers of a swept column, ascending."""
    return sorted(pd.to_numeric(df[column], errors="coerce").dropna().unique().tolist())


def first_value(df: pd.DataFrame, mask: pd.Series, column: str) -> float:
    v = pd.to_numeric(df.loc[mask, column], errors="coerce").dropna()
    return float(v.iloc[0]) if len(v) else math.nan


def best_on_validation(df: pd.DataFrame, by: list[str], mask: pd.Series | None = None) -> tuple:
    """The values of `by` (among `mask`'s rows) whose usable trials have the highest mean
    validation accuracy: every "best" of the findings is chosen here, on validation only, never
    on test (ties: the first in sorted order). ValueError when no trial has one."""
    rows = df if mask is None else df[np.asarray(mask)]
    ok = rows[is_usable(rows, VAL_ACC)] if VAL_ACC in rows else rows[:0]
    if ok.empty:
        raise ValueError(
            "no trial has a usable validation accuracy: a best is chosen on validation only "
            "(run the study with a validation split, val_fraction > 0)"
        )
    key = ok.groupby(by)[VAL_ACC].mean().idxmax()
    return key if isinstance(key, tuple) else (key,)
