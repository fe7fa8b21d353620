"""Derived columns every figure relies on: trial outcome, model / regime labels, ordering.

All functions accept frames straight from results.parquet / history.parquet (or frames built
in tests following docs/results_schema.md) and never modify their input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.schema import NOT_SWEPT
from core import columns as C
from core.config import ENSEMBLES, FAST_WEIGHT_SWEEP, OPTIMIZERS, SHARING

# Outcome of a trial, in the order they are reported.
COMPLETED, EARLY_STOPPED, ASHA_STOPPED, DIVERGED, ERROR = (
    "completed",
    "early_stopped",
    "asha_stopped",
    "diverged",
    "error",
)
OUTCOMES = (COMPLETED, EARLY_STOPPED, ASHA_STOPPED, DIVERGED, ERROR)
OUTCOME_TEXT = {
    COMPLETED: "completed",
    EARLY_STOPPED: "early-stopped (patience)",
    ASHA_STOPPED: "stopped early by ASHA",
    DIVERGED: "diverged",
    ERROR: "errored",
}
# Trials whose quality metrics (accuracy, loss, ...) mean nothing.
UNUSABLE = (DIVERGED, ERROR)


def _flag(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series(False, index=df.index)
    return df[column].astype("boolean").fillna(False).astype(bool)


def trial_outcome(results: pd.DataFrame) -> pd.Series:
    """One outcome per trial: error > diverged > asha_stopped > early_stopped > completed."""
    out = pd.Series(COMPLETED, index=results.index, dtype=object)
    out[_flag(results, C.EARLY_STOPPED)] = EARLY_STOPPED
    out[_flag(results, C.ASHA_STOPPED)] = ASHA_STOPPED
    out[_flag(results, C.DIVERGED)] = DIVERGED
    if C.STATUS in results:
        out[results[C.STATUS].astype(str).str.upper().eq(C.STATUS_ERROR).to_numpy()] = ERROR
    return out


def model_label(row: pd.Series | dict[str, Any], with_arch: bool = False) -> str:
    """'single vgg11' for one network, else '<ensemble> x<size>' (e.g. 'batch x8')."""
    ensemble = row.get("ensemble")
    arch = row.get("arch")
    if ensemble == "single":
        return f"single {arch}" if isinstance(arch, str) else "single"
    size = row.get("ensemble_size")
    label = f"{ensemble} x{int(size)}" if _present(size) else str(ensemble)
    return f"{label} {arch}" if with_arch and isinstance(arch, str) else label


def regime_label(network: Any, ensemble: Any) -> str:
    """Sharing regime, e.g. 'net early / ens none'."""
    return f"net {network} / ens {ensemble}"


def tidy_results(results: pd.DataFrame) -> pd.DataFrame:
    """Copy of results with `outcome`, `model` and `regime`; inf metrics become NaN."""
    df = results.copy()
    num = df.select_dtypes(include="number").columns
    df[num] = df[num].replace([np.inf, -np.inf], np.nan)
    df = df.copy()  # consolidated again: the assignment above leaves one block per column
    df["outcome"] = trial_outcome(df)
    if "ensemble" in df:
        with_arch = "arch" in df and df["arch"].nunique(dropna=False) > 1
        df["model"] = [model_label(r, with_arch) for r in df.to_dict("records")]
    if "sharing_network" in df and "sharing_ensemble" in df:
        pairs = zip(df["sharing_network"], df["sharing_ensemble"], strict=True)
        df["regime"] = [regime_label(n, e) for n, e in pairs]
    if C.TRIAL_ID in df:
        df[C.TRIAL_ID] = df[C.TRIAL_ID].astype(str)
    return df


def tidy_history(history: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """History with the per-trial columns (config, outcome, model, regime) taken from results."""
    res = tidy_results(results)
    hist = history.copy()
    hist[C.TRIAL_ID] = hist[C.TRIAL_ID].astype(str)
    num = hist.select_dtypes(include="number").columns
    hist[num] = hist[num].replace([np.inf, -np.inf], np.nan)
    hist = hist.copy()  # consolidated again (see tidy_results)
    per_trial = [c for c in (*C.CONFIG_COLUMNS, "outcome", "model", "regime") if c in res]
    # Per-trial columns come from results (one source of truth); per-epoch ones from history.
    keep = [c for c in hist.columns if c not in per_trial or c == C.TRIAL_ID]
    keep = [c for c in keep if c not in ("outcome", "model", "regime")]
    merged = hist[keep].merge(
        res[[C.TRIAL_ID, *[c for c in per_trial if c != C.TRIAL_ID]]], on=C.TRIAL_ID, how="left"
    )
    if C.DIVERGED in history:
        flags = history[C.DIVERGED].astype("boolean").fillna(False)
        merged["diverged_epoch"] = flags.to_numpy()
    return merged


def is_usable(df: pd.DataFrame, metric: str) -> pd.Series:
    """Rows whose `metric` can enter a mean: finite, and (for quality metrics) not diverged
    or errored. Cost metrics (params, throughput) stay valid for diverged trials."""
    outcome = df["outcome"] if "outcome" in df else trial_outcome(df)
    ok = pd.to_numeric(df[metric], errors="coerce").notna() if metric in df else False
    if metric in C.COST_METRICS:
        return pd.Series(ok, index=df.index) & ~outcome.eq(ERROR)
    return pd.Series(ok, index=df.index) & ~outcome.isin(UNUSABLE)


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and v is not pd.NA


def fmt_value(v: Any) -> str:
    """Short label of a config value: 0.001 -> '0.001', -1.0 -> '-1', NaN/None -> 'None'."""
    if not _present(v):
        return "None"
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | float | np.integer | np.floating):
        return f"{float(v):g}"
    return str(v)


_ORDERS: dict[str, Sequence[Any]] = {
    "alpha": FAST_WEIGHT_SWEEP,
    "gamma": FAST_WEIGHT_SWEEP,
    "sharing_network": SHARING,
    "sharing_ensemble": SHARING,
    "ensemble": ENSEMBLES,
    "optimizer": OPTIMIZERS,
}


def order_values(column: str, values: Iterable[Any]) -> list[Any]:
    """Distinct values of `column` in study order: the fast-weight sweep for alpha/gamma
    (other numbers slotted in numerically), the config's choice order for categorical fields,
    numeric / alphabetical otherwise; missing values (None/NaN) last."""
    present: dict[Any, None] = {}  # the distinct values in order of appearance (a dict: a
    missing = False  # list's `in` made a 10,000-trial search quadratic)
    for v in values:
        if not _present(v):
            missing = True
        else:
            present.setdefault(v)
    distinct = list(present)
    known = list(_ORDERS.get(column, ()))

    def key(v: Any) -> tuple[int, float, str]:
        if column == "model" and isinstance(v, str):
            return _model_key(v)
        if v in known:
            if isinstance(v, str):
                return (0, float(known.index(v)), "")
            return (0, float(v), "")
        if isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool):
            return (0 if known and not isinstance(known[0], str) else 1, float(v), "")
        return (2, 0.0, str(v))

    ordered = sorted(distinct, key=key)
    return ordered + ([None] if missing else [])


def _model_key(label: str) -> tuple[int, float, str]:
    """'single vgg11' < 'batch x2' < 'batch x8' < 'deep x4' (ensemble order, then size)."""
    kind, _, rest = label.partition(" ")
    rank = ENSEMBLES.index(kind) if kind in ENSEMBLES else len(ENSEMBLES)
    size = rest.split()[0][1:] if rest.startswith("x") else "1"
    return (0, rank * 1e6 + (float(size) if size.isdigit() else 0.0), label)


def varying_columns(df: pd.DataFrame, exclude: Iterable[str] = NOT_SWEPT) -> list[str]:
    """Config columns (and extra_* tags) with more than one distinct value (NaN counts)."""
    skip = set(exclude)
    cols = [c for c in C.CONFIG_COLUMNS if c in df and c not in skip]
    cols += sorted(c for c in df.columns if c.startswith(C.EXTRA_PREFIX) and c not in skip)
    return [c for c in cols if df[c].astype(object).map(fmt_value).nunique() > 1]


def group_label(row: dict[str, Any], columns: Sequence[str]) -> str:
    """'alpha=0.5, gamma=-1' for the given columns of one row."""
    return ", ".join(f"{c}={fmt_value(row.get(c))}" for c in columns) or "all trials"


def sort_frame(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by `columns` in study order (see order_values)."""
    if df.empty or not columns:
        return df
    ranks = {}
    for c in columns:
        rank = {}  # label -> its first place in study order
        for i, v in enumerate(order_values(c, df[c])):
            rank.setdefault(fmt_value(v), i)
        # each distinct value labelled once (a 10,000-trial search has 10,000 rows per column)
        codes, uniques = pd.factorize(df[c].astype(object), use_na_sentinel=False)
        ranks[c] = np.array([rank[fmt_value(u)] for u in uniques], dtype=int)[codes]
    idx = pd.DataFrame(ranks, index=df.index).sort_values(list(columns), kind="stable").index
    return df.loc[idx]
