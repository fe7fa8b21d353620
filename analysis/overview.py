"""What the overview page says about a study: how trials are selected, the best configurations
(mean ± sd over seeds), the errors of errored trials, and whether seeds allow any test at all.

Configurations are the distinct values of the swept config columns (tidy.varying_columns: seed
excluded), so the seeds of one configuration pool into one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.aggregate import ONE_SEED, aggregate
from analysis.tidy import ERROR, fmt_value, group_label
from core import columns as C

TOP_CONFIGS = 5  # rows of the best-configurations table
# Test metrics shown beside the selection metric: the val-selected test accuracy first (the
# honest figure of a trial), then the last epoch's.
TEST_BESIDE = (
    C.TEST_ACC_AT_BEST_VAL,
    C.FINAL_TEST_ACC,
    C.FINAL_TEST_LOSS,
    C.summary_column(C.FINAL, C.split_metric(C.TEST, "ece")),
)


@dataclass(frozen=True)
class Selection:
    column: str  # the per-trial column ranked (final_<selection_metric>)
    maximise: bool
    note: str | None = None  # why the study's own metric was not used


def selection_of(meta: dict[str, Any]) -> Selection:
    """The study's selection metric (study.json `selection_metric`, a validation metric) as a
    results column, and its mode. A record without one, or naming a non-validation metric,
    gets core.columns.SELECTION_COLUMN (ranking never reads the test set)."""
    metric = meta.get(C.STUDY_SELECTION_METRIC)
    mode = str(meta.get(C.STUDY_SELECTION_MODE, "max"))
    if metric is None:
        return Selection(C.SELECTION_COLUMN, True)
    if not str(metric).startswith(f"{C.VAL}_"):
        why = f"study.json names selection metric {metric!r}, not a validation metric"
        return Selection(C.SELECTION_COLUMN, True, f"{why}: ranked by {C.SELECTION_COLUMN}")
    return Selection(C.summary_column(C.FINAL, str(metric)), mode != "min")


def seeds_per_config(results: pd.DataFrame, varying: list[str]) -> int:
    """The most trials (seeds) any one configuration has."""
    if not varying:
        return len(results)
    keys = results[varying].astype(object).map(fmt_value).agg("|".join, axis=1)
    return int(keys.value_counts().max())


def best_configurations(
    results: pd.DataFrame, varying: list[str], sel: Selection, k: int = TOP_CONFIGS
) -> pd.DataFrame:
    """The top `k` configurations by the mean of `sel.column` over their usable trials: one row
    each with `rank`, `configuration` (its swept values), the varying columns, and per metric
    (the selection column, then TEST_BESIDE where present) `<m>_mean`, `<m>_sd`, `<m>_n`;
    `n_trials` counts every trial of the configuration. Configurations without a usable
    selection value are not ranked."""
    metrics = [sel.column, *[m for m in TEST_BESIDE if m in results and m != sel.column]]
    stats = [aggregate(results, varying, m) for m in metrics]
    base = stats[0]
    out = base[varying].copy() if varying else pd.DataFrame(index=base.index)
    for m, s in zip(metrics, stats, strict=True):
        out[f"{m}_mean"], out[f"{m}_sd"], out[f"{m}_n"] = s["mean"], s["std"], s["n"]
    out["n_trials"] = base["n_trials"]
    out = out[out[f"{sel.column}_n"] > 0]
    out = out.sort_values(f"{sel.column}_mean", ascending=not sel.maximise, kind="stable")
    out = out.head(k).reset_index(drop=True)
    labels = [group_label(r, varying) for r in out[varying].to_dict("records")]
    out.insert(0, "configuration", labels)
    out.insert(0, "rank", range(1, len(out) + 1))
    return out


def ranked_configurations(results: pd.DataFrame, varying: list[str], sel: Selection) -> int:
    """How many configurations have a usable selection value (the table's 'of N')."""
    stats = aggregate(results, varying, sel.column)
    return int((stats["n"] > 0).sum())


def error_messages(results: pd.DataFrame) -> pd.DataFrame:
    """Each distinct error message of the errored trials with its count (most frequent first,
    ties alphabetically)."""
    errored = results[results["outcome"].eq(ERROR)]
    if C.ERROR in errored:
        messages = errored[C.ERROR].fillna("(no message recorded)").astype(str)
    else:
        messages = pd.Series("(no message recorded)", index=errored.index)
    counts = messages.value_counts()
    out = pd.DataFrame({"error": counts.index, "trials": counts.to_numpy()})
    return out.sort_values(["trials", "error"], ascending=[False, True], ignore_index=True)


@dataclass
class Overview:
    """Everything the overview page shows besides the figures and links."""

    selection: Selection
    best: pd.DataFrame  # best_configurations
    ranked: int  # configurations with a usable selection value
    seeds: int  # most seeds of one configuration
    errors: pd.DataFrame  # error_messages
    caveats: list[str]  # said above the tables (e.g. one seed)


def overview_of(results: pd.DataFrame, varying: list[str], meta: dict[str, Any]) -> Overview:
    sel = selection_of(meta)
    seeds = seeds_per_config(results, varying)
    caveats = [sel.note] if sel.note else []
    if seeds < 2:
        caveats.append(ONE_SEED)
    if sel.column in results:
        best = best_configurations(results, varying, sel)
        ranked = ranked_configurations(results, varying, sel)
    else:
        best, ranked = pd.DataFrame(), 0
    if not ranked:
        caveats.append(
            f"no trial has a usable {sel.column} (no validation split?): configurations are "
            "not ranked, since ranking never reads the test set"
        )
    return Overview(sel, best, ranked, seeds, error_messages(results), caveats)
