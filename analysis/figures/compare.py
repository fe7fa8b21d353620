"""Figures across experiments: the main metric side by side, and the searches' Pareto fronts
overlaid. Each takes (label, tidy results) pairs, one per experiment, in the order given."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from analysis.figures.search import (
    cost_columns,
    cost_panels,
    cost_points,
    label_cost_axis,
    pareto_table,
)
from analysis.figures.style import color, finish, fmt_metric
from analysis.schema import metric_label
from analysis.tidy import is_usable
from core.columns import SELECTION_COLUMN, TEST_ACC_AT_BEST_VAL, TRIAL_ID

# The main metric of every study: a trial's test accuracy at its best validation epoch (the
# honest figure of a val-selected trial); the selected trial is the best by SELECTION_COLUMN.
MAIN = TEST_ACC_AT_BEST_VAL
Labelled = Sequence[tuple[str, pd.DataFrame]]


def selected_trial(results: pd.DataFrame, selection: str = SELECTION_COLUMN) -> pd.Series | None:
    """The usable trial with the highest `selection` value (validation), or None."""
    ok = results[is_usable(results, selection) & is_usable(results, MAIN)]
    if ok.empty:
        return None
    return ok.sort_values(selection, ascending=False, kind="stable").iloc[0]


def main_metric_boxes(experiments: Labelled) -> go.Figure:
    """One box per experiment of MAIN over its usable trials (every trial a point), and a star
    at the trial its validation accuracy selects."""
    fig = go.Figure()
    counts = []
    for k, (label, res) in enumerate(experiments):
        ok = res[is_usable(res, MAIN)]
        counts.append(f"{label}: n={len(ok)}")
        fig.add_trace(
            go.Box(
                x=[label] * len(ok),
                y=ok[MAIN],
                name=label,
                boxpoints="all",
                jitter=0.3,
                pointpos=0,
                marker={"color": color(k), "size": 5},
                hovertext=[f"trial {t}" for t in ok[TRIAL_ID]],
                showlegend=False,
            )
        )
        best = selected_trial(res)
        if best is not None:
            fig.add_trace(
                go.Scatter(
                    x=[label],
                    y=[best[MAIN]],
                    mode="markers",
                    marker={"symbol": "star", "size": 16, "color": "#d62728"},
                    name="selected by validation accuracy",
                    legendgroup="selected",
                    showlegend=k == 0,
                    hovertext=[
                        f"{label}: trial {best[TRIAL_ID]}<br>"
                        f"{metric_label(SELECTION_COLUMN)} {fmt_metric(best[SELECTION_COLUMN])}"
                    ],
                    hovertemplate="%{hovertext}<br>%{y:.4f}<extra></extra>",
                )
            )
    fig.update_xaxes(type="category")
    fig.update_yaxes(title_text=f"{metric_label(MAIN)} (higher is better)")
    fig.update_layout(legend={"orientation": "h", "y": -0.15})
    title = f"{metric_label(MAIN)} per experiment, across usable trials"
    return finish(fig, title, [], height=560, subtitle="; ".join(counts))


def pareto_overlay(searches: Labelled) -> go.Figure:
    """The searches' 2-D Pareto fronts (validation accuracy against each cost axis they all
    report: core.pareto via search.pareto_table) overlaid, one colour per experiment; the other
    usable trials as faint points."""
    shared = [
        c for c in cost_columns(searches[0][1]) if all(c in cost_columns(r) for _, r in searches)
    ]
    fig = cost_panels(shared)
    sizes = []
    for k, (label, res) in enumerate(searches):
        table = pareto_table(res)
        fronts = []
        for j, (col, larger) in enumerate(shared):
            flag = table[f"pareto_{col}"]
            front = table[flag].sort_values(col)
            fronts.append(len(front))
            rest = table[~flag]
            other = cost_points(
                rest[col],
                rest[SELECTION_COLUMN],
                [f"{label}: trial {t}" for t in rest[TRIAL_ID]],
                mode="markers",
                marker={"color": color(k), "size": 6, "opacity": 0.3},
                name=f"{label}: other trials",
                legendgroup=label,
                showlegend=False,
            )
            optimal = cost_points(
                front[col],
                front[SELECTION_COLUMN],
                [f"{label}: trial {t}" for t in front[TRIAL_ID]],
                mode="markers+lines",
                line={"shape": "vh" if larger else "hv", "color": color(k), "width": 2},
                marker={"color": color(k), "size": 10, "symbol": "star"},
                name=f"{label}: Pareto front",
                legendgroup=label,
                showlegend=j == 0,
            )
            fig.add_trace(other, row=1, col=j + 1)
            fig.add_trace(optimal, row=1, col=j + 1)
            label_cost_axis(fig, col, larger, j + 1)
        sizes.append(f"{label}: {len(table)} trials, front {'/'.join(map(str, fronts))}")
    fig.update_yaxes(title_text=metric_label(SELECTION_COLUMN), row=1, col=1)
    fig.update_layout(legend={"orientation": "h", "y": -0.2})
    notes = [] if shared else ["the searches share no params / throughput column: no front"]
    title = f"Pareto fronts of {len(searches)} search{'es' if len(searches) != 1 else ''}"
    return finish(fig, title, notes, height=600, subtitle="; ".join(sizes))
