"""The pages of each study kind: the alpha x gamma heatmaps, the ensemble-size lines, the
optimizers' learning curves, the sharing regimes, the methods at matched cost and a search's
Pareto front and importances. Each adds its pages and tables to a `Plan`, or says in
`plan.skipped` why it could not."""

from __future__ import annotations

import pandas as pd

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
from analysis.importance import MIN_TRIALS, param_importances
from analysis.load import Experiment
from analysis.plan import Page, Plan, missing
from analysis.schema import metric_label
from analysis.tidy import OUTCOME_TEXT, fmt_value, group_label, order_values
from core import columns as C

MAX_GROUPS = 12  # heatmaps per metric when further config columns vary


def _groups(res: pd.DataFrame, others: list[str]) -> list[tuple[str, pd.DataFrame]]:
    if not others:
        return [("", res)]
    keys = res[others].astype(object).map(fmt_value).agg(" ".join, axis=1)
    out = []
    for key in dict.fromkeys(keys):
        sub = res[keys == key]
        out.append((group_label(sub.iloc[0], others), sub))
    return out


def alpha_gamma_pages(plan: Plan, res: pd.DataFrame, varying: list[str]) -> None:
    if miss := missing(res, alpha_gamma.NEEDS):
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


def ensemble_size_pages(plan: Plan, res: pd.DataFrame) -> None:
    if miss := missing(res, ensemble_size.NEEDS):
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


def optimizers_pages(plan: Plan, exp: Experiment) -> None:
    if exp.history is None:
        plan.skipped.append(f"optimizer learning curves: no {C.HISTORY_FILE}")
        return
    if miss := missing(exp.history, optimizers.NEEDS):
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


def sharing_pages(plan: Plan, res: pd.DataFrame, varying: list[str], exp_meta: dict) -> None:
    if miss := missing(res, sharing.NEEDS):
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


def methods_pages(plan: Plan, res: pd.DataFrame) -> None:
    if miss := missing(res, methods.NEEDS):
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


def search_pages(plan: Plan, exp: Experiment, varying: list[str]) -> None:
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
