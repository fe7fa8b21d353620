"""Decide which pages an experiment gets, and build their figures and tables in memory.

A study-specific page is drawn when study.json (or the results' `study` column) names that
study, or, when the study is unknown, when its factor varies (alpha and gamma; ensemble_size;
optimizer; sharing_network / sharing_ensemble; the methods study's `method` tag; an
optuna.db or pareto_front.parquet for search). Pages for other studies are not drawn at all.
The seed box plot needs more than one seed in some configuration; the best-trial curves need
history.parquet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go

from analysis import figures as F
from analysis.aggregate import aggregate
from analysis.figures import (
    alpha_gamma,
    ensemble_size,
    methods,
    optimizers,
    robustness,
    search,
    sharing,
)
from analysis.figures.parcoords import parallel_coordinates
from analysis.figures.style import get_notes
from analysis.importance import MIN_TRIALS, param_importances
from analysis.load import Experiment
from analysis.overview import Selection, selection_of
from analysis.schema import metric_label
from analysis.tidy import OUTCOME_TEXT, OUTCOMES, fmt_value, group_label, is_usable, order_values
from analysis.tidy import varying_columns as _varying
from core import columns as C

MAX_GROUPS = 12  # heatmaps per metric when further config columns vary
BEST_TRIALS = 5  # learning curves of the best trials drawn
SUMMARY_METRICS = (*F.HEATMAP_METRICS, C.PARAMS, C.BATCHES_PER_S)
# Robustness columns of the tables, where the trials measured them.
ROBUSTNESS_METRICS = F.ROBUSTNESS_TABLE_METRICS


@dataclass
class Page:
    slug: str  # file name without .html
    title: str
    description: str
    figures: list[go.Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)  # CSV names (keys of Plan.tables)
    message: str | None = None  # shown instead of a figure (e.g. too few trials)
    headline: bool = False  # its first figure is drawn on the overview (index.html) too

    def all_notes(self) -> list[str]:
        notes = list(self.notes)
        for fig in self.figures:
            notes += get_notes(fig)
        return list(dict.fromkeys(notes))


@dataclass
class Plan:
    pages: list[Page] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # CSV name -> table
    skipped: list[str] = field(default_factory=list)  # applicable pages that could not be drawn


def _missing(df: pd.DataFrame | None, columns: tuple[str, ...]) -> list[str]:
    return list(columns) if df is None else [c for c in columns if c not in df]


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
        _alpha_gamma(plan, res, varying)
    if wants("ensemble_size", "ensemble_size" in varying):
        _ensemble_size(plan, res)
    if wants("optimizers", "optimizer" in varying):
        _optimizers(plan, exp)
    if wants("sharing", "sharing_network" in varying or "sharing_ensemble" in varying):
        _sharing(plan, res, varying, exp.meta)
    if wants("methods", methods.METHOD in varying):
        _methods(plan, res)
    if wants("search", exp.optuna_db is not None or exp.pareto is not None):
        _search(plan, exp, varying)
    _parallel(plan, res, varying, selection_of(exp.meta))
    _robustness(plan, res)
    _seeds(plan, exp, varying)
    _best(plan, exp, varying)
    if is_smoke(exp.meta):
        for page in plan.pages:
            page.notes.insert(0, SMOKE_NOTE)
    return plan


# A smoke study (study.json's `smoke`): every page and the index say what it is.
SMOKE_NOTE = (
    "This is a smoke study: a pipeline check (the small CNN, a few thousand training images, a "
    "few epochs, a reduced grid) that shows the study runs and its files and figures are "
    "complete. It learns a little, but its numbers answer none of the study's questions: run "
    "the cpu or full preset for that."
)


def is_smoke(meta: dict) -> bool:
    return bool(meta.get("smoke")) or meta.get("preset") == "smoke"


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


def _groups(res: pd.DataFrame, others: list[str]) -> list[tuple[str, pd.DataFrame]]:
    if not others:
        return [("", res)]
    keys = res[others].astype(object).map(fmt_value).agg(" ".join, axis=1)
    out = []
    for key in dict.fromkeys(keys):
        sub = res[keys == key]
        out.append((group_label(sub.iloc[0], others), sub))
    return out


def _alpha_gamma(plan: Plan, res: pd.DataFrame, varying: list[str]) -> None:
    if miss := _missing(res, alpha_gamma.NEEDS):
        plan.skipped.append(f"alpha x gamma heatmaps: results lack column(s) {miss}")
        return
    others = [c for c in varying if c not in ("alpha", "gamma")]
    groups = _groups(res, others)
    notes = []
    if len(groups) > MAX_GROUPS:
        notes.append(f"{len(groups)} combinations of {others}: only the first {MAX_GROUPS} drawn")
        groups = groups[:MAX_GROUPS]
    alphas, gammas = order_values("alpha", res["alpha"]), order_values("gamma", res["gamma"])
    tables = []
    extra = robustness.measured(res, F.ROBUSTNESS_FIGURE_METRICS)
    for metric in (*F.HEATMAP_METRICS, *extra):
        if metric not in res:
            plan.skipped.append(f"alpha x gamma heatmap of {metric}: column missing")
            continue
        figs = [F.alpha_gamma_heatmap(g, metric, alphas, gammas, label) for label, g in groups]
        plan.pages.append(
            Page(
                slug=f"alpha_gamma_{metric}",
                title=f"alpha x gamma: {metric_label(metric)}",
                description="mean over seeds per fast-weight init cell; hover for std and n",
                figures=figs,
                notes=list(notes),
                tables=["alpha_gamma.csv"],
                headline=metric == F.HEATMAP_METRICS[0],
            )
        )
        tables.append(
            F.alpha_gamma_table(res, metric) if not others else _ag_by(res, others, metric)
        )
    if tables:
        plan.tables["alpha_gamma.csv"] = pd.concat(tables, ignore_index=True)


def _ag_by(res: pd.DataFrame, others: list[str], metric: str) -> pd.DataFrame:
    return aggregate(res, [*others, "alpha", "gamma"], metric)


def _ensemble_size(plan: Plan, res: pd.DataFrame) -> None:
    if miss := _missing(res, ensemble_size.NEEDS):
        plan.skipped.append(f"ensemble size x learning rate: results lack column(s) {miss}")
        return
    plan.pages.append(
        Page(
            slug="ensemble_size_lr",
            title="Ensemble size x learning rate",
            description="final and average test accuracy and loss against ensemble size, "
            "one line per learning rate, error bars: std across seeds",
            figures=[F.ensemble_size_lines(res)],
            tables=["ensemble_size_lr.csv"],
            headline=True,
        )
    )
    plan.tables["ensemble_size_lr.csv"] = F.ensemble_size_table(res)
    if extra := robustness.measured(res, F.ROBUSTNESS_FIGURE_METRICS):
        plan.pages.append(
            Page(
                slug="ensemble_size_robustness",
                title="Ensemble size x learning rate: robustness",
                description="corrupted accuracy and ECE, OOD AUROC against ensemble size, one "
                "line per learning rate, error bars: std across seeds",
                figures=[
                    F.ensemble_size_lines(
                        res, extra, "Ensemble size x learning rate: robustness (mean ± std)"
                    )
                ],
                tables=["ensemble_size_robustness.csv"],
            )
        )
        plan.tables["ensemble_size_robustness.csv"] = F.ensemble_size_table(res, extra)


def _optimizers(plan: Plan, exp: Experiment) -> None:
    if exp.history is None:
        plan.skipped.append(f"optimizer learning curves: no {C.HISTORY_FILE}")
        return
    if miss := _missing(exp.history, optimizers.NEEDS):
        plan.skipped.append(f"optimizer learning curves: history lacks column(s) {miss}")
        return
    notes = _not_in_history(exp)
    plan.pages.append(
        Page(
            slug="optimizers",
            title="Optimizers: learning curves",
            description="training and validation accuracy and loss against epoch, one line "
            "per optimizer x model (mean over seeds)",
            figures=[F.optimizer_curves(exp.history)],
            notes=notes,
            tables=["optimizers.csv"],
            headline=True,
        )
    )
    plan.tables["optimizers.csv"] = F.optimizer_table(exp.history)


def _not_in_history(exp: Experiment) -> list[str]:
    assert exp.history is not None
    absent = ~exp.results[C.TRIAL_ID].isin(set(exp.history[C.TRIAL_ID]))
    k = int(absent.sum())
    if not k:
        return []
    kinds = exp.results.loc[absent, "outcome"].value_counts()
    why = ", ".join(f"{n} {OUTCOME_TEXT[o]}" for o, n in kinds.items())
    return [f"{k} trial(s) have no epochs in {C.HISTORY_FILE} ({why}): not drawn"]


def _throughput_note(meta: dict, res: pd.DataFrame) -> str:
    """How the sharing page's batches/s was measured."""
    if sharing.timed_alone(res):
        how = meta.get("throughput", "timed alone, after every trial finished")
        return (
            f"batches/s is each regime's training loop, {how}: no other trial of the study "
            "ran meanwhile. The trials' own batches/s (also in sharing.csv) shared the node "
            "with other trials and is not compared"
        )
    return (
        "batches/s is each trial's training-loop throughput averaged over its epochs, "
        "measured while other trials may run on the same node: regimes compare fairly "
        "only when the study ran one trial per node (--max-concurrent = nodes and "
        "whole-node resources)"
    )


def _sharing(plan: Plan, res: pd.DataFrame, varying: list[str], exp_meta: dict) -> None:
    if miss := _missing(res, sharing.NEEDS):
        plan.skipped.append(f"sharing regimes: results lack column(s) {miss}")
        return
    others = [c for c in varying if c not in ("sharing_network", "sharing_ensemble")]
    plan.pages.append(
        Page(
            slug="sharing",
            title="Sharing regimes",
            description="final test accuracy, distinct parameters and batches/s per regime "
            "(sharing_network x sharing_ensemble), box plots across seeds",
            notes=[_throughput_note(exp_meta, res)],
            figures=[F.sharing_boxes(res, others)],
            tables=["sharing.csv"],
            headline=True,
        )
    )
    plan.tables["sharing.csv"] = F.sharing_table(res, others)
    if extra := robustness.measured(res, F.ROBUSTNESS_FIGURE_METRICS):
        title = "Sharing regimes: robustness, across seeds"
        plan.pages.append(
            Page(
                slug="sharing_robustness",
                title="Sharing regimes: robustness",
                description="corrupted accuracy and ECE, OOD AUROC per regime, box plots "
                "across seeds",
                figures=[F.sharing_boxes(res, others, extra, title)],
                tables=["sharing_robustness.csv"],
            )
        )
        plan.tables["sharing_robustness.csv"] = F.sharing_table(res, others, extra)


def _methods(plan: Plan, res: pd.DataFrame) -> None:
    if miss := _missing(res, methods.NEEDS):
        plan.skipped.append(f"methods at matched cost: results lack column(s) {miss}")
        return
    plan.pages.append(
        Page(
            slug="methods",
            title="Methods at matched cost",
            description="accuracy, NLL, ECE, corrupted accuracy and OOD AUROC against "
            "distinct parameters, training FLOPs per image and images/s, per method and "
            "budget, with each method's Pareto front",
            figures=[methods.methods_figure(res, m) for m in methods.methods_metrics(res)],
            tables=["methods.csv"],
            headline=True,
        )
    )
    plan.tables["methods.csv"] = methods.methods_table(res)


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


def _search(plan: Plan, exp: Experiment, varying: list[str]) -> None:
    res = exp.results
    if not any(c in res for c, _ in search.COSTS):
        plan.skipped.append("search Pareto front: results lack params and throughput columns")
    else:
        plan.pages.append(
            Page(
                slug="search_pareto",
                title="Search: Pareto front",
                description="final validation accuracy (the search's objective) against "
                "distinct parameters and throughput; "
                "Pareto-optimal trials highlighted",
                figures=[F.pareto_front_figure(res, exp.pareto, varying)],
                tables=["pareto.csv"],
                headline=True,
            )
        )
        plan.tables["pareto.csv"] = F.pareto_table(res, exp.pareto)
    imp = param_importances(res, exp.optuna_db, exp.meta)
    if imp.values is None:
        # No page (and no link) without importances: the index says why instead (the notes
        # name the threshold, importance.MIN_TRIALS completed or usable trials).
        plan.skipped.append(f"parameter importances: {imp.notes[-1]}")
        return
    table = imp.values.rename("importance").rename_axis("parameter").reset_index()
    plan.tables["importances.csv"] = table.assign(method=imp.method)
    plan.pages.append(
        Page(
            slug="search_importance",
            title="Search: parameter importances",
            description="how much each searched parameter matters for final validation "
            f"accuracy (the objective); drawn from {MIN_TRIALS} trials on",
            notes=list(imp.notes),
            figures=[F.importance_figure(imp.values, imp.method)],
            tables=["importances.csv"],
        )
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
