"""Decide which pages an experiment gets, and build their figures and tables in memory.

The pages of each study kind are `analysis.study_pages`'; here the choice of them and the pages
every study gets (parallel coordinates, robustness, seeds, the best trials). A study-specific
page is drawn when study.json (or the results' `study` column) names that
study, or, when the study is unknown, when its factor varies (alpha and gamma; ensemble_size;
optimizer; sharing_network / sharing_ensemble; the methods study's `method` tag; an
optuna.db or pareto_front.parquet for search). Pages for other studies are not drawn at all.
The seed box plot needs more than one seed in some configuration; the best-trial curves need
history.parquet.
"""

from __future__ import annotations

import pandas as pd

from analysis import figures as F
from analysis.aggregate import aggregate
from analysis.figures import methods, robustness
from analysis.figures.parcoords import parallel_coordinates
from analysis.load import Experiment
from analysis.overview import Selection, selection_of
from analysis.plan import SMOKE_NOTE, Page, Plan, is_smoke
from analysis.schema import metric_label
from analysis.study_pages import (
    alpha_gamma_pages,
    ensemble_size_pages,
    methods_pages,
    optimizers_pages,
    search_pages,
    sharing_pages,
)
from analysis.tidy import OUTCOMES, fmt_value, is_usable
from analysis.tidy import varying_columns as _varying
from core import columns as C

BEST_TRIALS = 5  # learning curves of the best trials drawn
SUMMARY_METRICS = (*F.HEATMAP_METRICS, C.PARAMS, C.BATCHES_PER_S)
# Robustness columns of the tables, where the trials measured them.
ROBUSTNESS_METRICS = F.ROBUSTNESS_TABLE_METRICS


def plan_report(exp: Experiment) -> Plan:
    """All pages that apply to `exp`, figures built, plus the CSV tables."""
    plan = Plan()
    res = exp.results
    varying = _varying(res)
    study = exp.study

    def wants(kind: str, factor_varies: bool) -> bool:
        return study == kind if study is not None else factor_varies

    plan.tables["summary.csv"] = summary_table(res, varying)
    plan.tables["trials.csv"] = trials_table(res, varying)
    if wants("alpha_gamma", "alpha" in varying and "gamma" in varying):
        alpha_gamma_pages(plan, res, varying)
    if wants("ensemble_size", "ensemble_size" in varying):
        ensemble_size_pages(plan, res)
    if wants("optimizers", "optimizer" in varying):
        optimizers_pages(plan, exp)
    if wants("sharing", "sharing_network" in varying or "sharing_ensemble" in varying):
        sharing_pages(plan, res, varying, exp.meta)
    if wants("methods", methods.METHOD in varying):
        methods_pages(plan, res)
    if wants("search", exp.optuna_db is not None or exp.pareto is not None):
        search_pages(plan, exp, varying)
    _parallel(plan, res, varying, selection_of(exp.meta))
    _robustness(plan, res)
    _seeds(plan, exp, varying)
    _best(plan, exp, varying)
    if is_smoke(exp.meta):
        for page in plan.pages:
            page.notes.insert(0, SMOKE_NOTE)
    return plan


def summary_table(res: pd.DataFrame, varying: list[str]) -> pd.DataFrame:
    """Long table: per varying-config group and metric, mean/std/n and exclusions."""
    metrics = [*SUMMARY_METRICS, *robustness.measured(res, ROBUSTNESS_METRICS)]
    parts = [aggregate(res, varying, m) for m in metrics if m in res]
    return pd.concat(parts, ignore_index=True)


def trials_table(res: pd.DataFrame, varying: list[str]) -> pd.DataFrame:
    """One row per trial: config that varies, seed, outcome and the main metrics."""
    cols = [C.TRIAL_ID, *varying, "seed", "outcome", C.STATUS, C.EPOCHS_DONE, C.ERROR]
    cols += [m for m in SUMMARY_METRICS if m in res]
    cols += robustness.measured(res, ROBUSTNESS_METRICS)
    cols = list(dict.fromkeys(c for c in cols if c in res))
    return res[cols]


def _robustness(plan: Plan, res: pd.DataFrame) -> None:
    """The corruption x severity heatmaps, when some trial measured them."""
    if not robustness.measured(res, robustness.NEEDS):
        return
    figs = [F.corruption_heatmap(res, key) for key in robustness.CELL_KEYS]
    plan.pages.append(
        Page(
            slug="robustness",
            title="Robustness: corruption x severity",
            description="accuracy and ECE on the CIFAR-10-C corruptions computed on the fly, "
            "per corruption and severity, mean over usable trials (hover for std and n)",
            figures=figs,
            tables=["robustness.csv"],
        )
    )
    plan.tables["robustness.csv"] = pd.concat(
        [F.corruption_table(res, key) for key in robustness.CELL_KEYS], ignore_index=True
    )


def _parallel(plan: Plan, res: pd.DataFrame, varying: list[str], sel: Selection) -> None:
    """Parallel coordinates over every swept knob, for every study that sweeps one."""
    what = "parallel coordinates of the swept knobs"
    if not varying:
        plan.skipped.append(f"{what}: no config column varies between trials")
        return
    if sel.column not in res or not is_usable(res, sel.column).any():
        plan.skipped.append(
            f"{what}: no trial has a usable {metric_label(sel.column)} (the selection metric; "
            "trials are never coloured by a test metric in its place)"
        )
        return
    plan.pages.append(
        Page(
            slug="parallel_coordinates",
            title="Every swept knob: parallel coordinates",
            description=f"one line per trial across the {len(varying)} swept config columns, "
            f"coloured by {metric_label(sel.column)} (the selection metric); drag along an "
            "axis to filter",
            figures=[parallel_coordinates(res, varying, sel.column, sel.maximise)],
            notes=[sel.note] if sel.note else [],
            tables=["trials.csv"],
            headline=True,
        )
    )


def _seeds(plan: Plan, exp: Experiment, varying: list[str]) -> None:
    res = exp.results
    if res["seed"].nunique() < 2:
        return
    keys = res[varying].astype(object).map(fmt_value).agg("|".join, axis=1) if varying else None
    per_config = keys.value_counts().max() if keys is not None else len(res)
    if per_config < 2:
        return
    metric = C.FINAL_TEST_ACC  # the reported metric's spread (ranking is _best's, on validation)
    plan.pages.append(
        Page(
            slug="seeds",
            title=f"Across seeds: {metric_label(metric)}",
            description="box plot of the final metric across seeds, per configuration",
            figures=[F.seed_boxes(res, varying, metric)],
            tables=["summary.csv"],
        )
    )


def _best(plan: Plan, exp: Experiment, varying: list[str]) -> None:
    if exp.history is None:
        plan.skipped.append(f"learning curves of the best trials: no {C.HISTORY_FILE}")
        return
    if C.SELECTION_COLUMN not in exp.results or exp.results[C.SELECTION_COLUMN].isna().all():
        # Never fall back to ranking by a test metric: that would select on the test set.
        plan.skipped.append(
            "learning curves of the best trials: no validation split (val_fraction 0), and "
            "trials are ranked by validation accuracy only"
        )
        return
    k = min(BEST_TRIALS, int(is_usable(exp.results, C.SELECTION_COLUMN).sum()))
    plan.pages.append(
        Page(
            slug="best_trials",
            title="Learning curves of the best trials",
            description=f"test accuracy and loss against epoch of the top {k} trials, ranked "
            f"by {metric_label(C.SELECTION_COLUMN)} (selection never reads the test set)",
            figures=[
                F.best_trial_curves(
                    exp.results, exp.history, varying, k=BEST_TRIALS, metric=C.SELECTION_COLUMN
                )
            ],
            tables=["trials.csv"],
        )
    )


def outcome_counts(res: pd.DataFrame) -> dict[str, int]:
    """Number of trials per outcome, in OUTCOMES order (zeros left out)."""
    counts = res["outcome"].value_counts()
    return {o: int(counts[o]) for o in OUTCOMES if o in counts}
