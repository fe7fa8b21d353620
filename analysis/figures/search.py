"""Search study: Pareto front(s) of accuracy against cost, and parameter importances."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.figures.style import finish
from analysis.schema import metric_label
from analysis.tidy import fmt_value, is_usable
from core.columns import (
    BATCHES_PER_S,
    FINAL_TEST_ACC,
    IMAGES_PER_S,
    PARAMS,
    PARETO_FILE,
    PEAK_MEMORY_MB,
    SELECTION_COLUMN,
    TEST_ACC_AT_BEST_VAL,
    TRAIN_FLOPS_PER_IMAGE,
    TRIAL_ID,
)
from core.pareto import pareto_mask

# The front is a selection: accuracy is the validation one (the search's objective).
ACC = SELECTION_COLUMN
REPORTED = (FINAL_TEST_ACC, TEST_ACC_AT_BEST_VAL)  # test columns the table shows too
# (cost column, True when larger is better); throughput is batches/s (the search study's
# 'throughput' objective), images/s only when batches/s is absent; training FLOPs per image
# and peak memory where the results have them (core.cost).
COSTS = (
    (PARAMS, False),
    (TRAIN_FLOPS_PER_IMAGE, False),
    (PEAK_MEMORY_MB, False),
    (BATCHES_PER_S, True),
    (IMAGES_PER_S, True),
)


def cost_columns(results: pd.DataFrame) -> list[tuple[str, bool]]:
    """Cost axes to plot: params, FLOPs per image, peak memory, and throughput (batches/s,
    else images/s), each when reported."""
    out = []
    for col, larger in COSTS:
        if col in results and results[col].notna().any():
            if col == IMAGES_PER_S and any(c == BATCHES_PER_S for c, _ in out):
                continue
            out.append((col, larger))
    return out


def pareto_table(results: pd.DataFrame, pareto: pd.DataFrame | None = None) -> pd.DataFrame:
    """Usable trials with their accuracy, costs and, per cost axis, whether they are on the
    front (`pareto_<cost>`: accuracy against that cost alone, core.pareto) and `pareto_study`
    (in pareto_front.parquet)."""
    costs = cost_columns(results)
    df = results[is_usable(results, ACC)]
    keep = [TRIAL_ID, ACC, *[c for c in REPORTED if c in df], *[c for c, _ in costs]]
    out = df[keep].copy()
    for col, larger in costs:
        out[f"pareto_{col}"] = pareto_mask(df[[col, ACC]], ["max" if larger else "min", "max"])
    if pareto is not None:
        out["pareto_study"] = out[TRIAL_ID].isin(set(pareto[TRIAL_ID].astype(str)))
    return out.reset_index(drop=True)


HOVER = "%{hovertext}<br>x=%{x:.4g}<br>acc=%{y:.4f}<extra></extra>"  # a point on a cost panel


def cost_panels(costs: Sequence[tuple[str, bool]]) -> go.Figure:
    """One panel per cost axis (at least one), titled 'accuracy vs <cost>'."""
    return make_subplots(
        rows=1,
        cols=max(len(costs), 1),
        subplot_titles=[f"accuracy vs {metric_label(c)}" for c, _ in costs],
        horizontal_spacing=0.1,
    )


def cost_points(x: pd.Series, y: pd.Series, hovertext: list[str], **style: Any) -> go.Scatter:
    """Trials on a cost panel: cost on x, accuracy on y, `hovertext` naming each trial."""
    return go.Scatter(x=x, y=y, hovertext=hovertext, hovertemplate=HOVER, **style)


def label_cost_axis(fig: go.Figure, col: str, larger: bool, panel: int) -> None:
    """The x-axis of cost panel `panel` (1-based): the cost, which way is better, SI ticks."""
    better = "more is better" if larger else "fewer is better"
    fig.update_xaxes(title_text=f"{metric_label(col)} ({better})", row=1, col=panel)
    fig.update_xaxes(tickformat=".3s", row=1, col=panel)


def _trial_hover(
    results: pd.DataFrame, hover_cols: Sequence[str]
) -> Callable[[pd.Series], list[str]]:
    """Hover text per trial id: 'trial <id>' and the `hover_cols` the results have."""
    cols = [c for c in hover_cols if c in results]
    # each trial's text made once, column by column (a 10,000-trial search: a look-up per cell
    # took seconds)
    text = pd.Series("", index=results[TRIAL_ID].to_numpy(), dtype=object)
    for c in cols:
        text += "<br>" + c + "=" + results[c].map(fmt_value).to_numpy()
    by_id = text.to_dict()

    def hover(ids: pd.Series) -> list[str]:
        return [f"trial {t}{by_id[t]}" for t in ids]

    return hover


def pareto_front_figure(
    results: pd.DataFrame, pareto: pd.DataFrame | None = None, hover_cols: Sequence[str] = ()
) -> go.Figure:
    """Final validation accuracy (the objective) against each cost axis
    (distinct parameters; images/s or batches/s).
    Highlighted: the trials in `pareto` (the study's own multi-objective front, from
    pareto_front.parquet) when given, else the 2-D non-dominated points of each panel
    (accuracy up, parameters down / throughput up), joined by a step line."""
    table = pareto_table(results, pareto)
    costs = cost_columns(results)
    fig = cost_panels(costs)
    hover = _trial_hover(results, hover_cols)
    src = PARETO_FILE if pareto is not None else "computed, 2-D"
    for k, (col, larger) in enumerate(costs):
        flag = table["pareto_study"] if pareto is not None else table[f"pareto_{col}"]
        rest, front = table[~flag], table[flag].sort_values(col)
        other = cost_points(
            rest[col],
            rest[ACC],
            hover(rest[TRIAL_ID]),
            mode="markers",
            marker={"color": "#9aa7b8", "size": 7},
            name="other trials",
            legendgroup="other",
            showlegend=k == 0,
        )
        optimal = cost_points(
            front[col],
            front[ACC],
            hover(front[TRIAL_ID]),
            mode="markers+lines" if pareto is None else "markers",
            line={"shape": "hv" if not larger else "vh", "color": "#d62728", "width": 1},
            marker={"color": "#d62728", "size": 11, "symbol": "star"},
            name=f"Pareto-optimal ({src})",
            legendgroup="front",
            showlegend=k == 0,
        )
        fig.add_trace(other, row=1, col=k + 1)
        fig.add_trace(optimal, row=1, col=k + 1)
        label_cost_axis(fig, col, larger, k + 1)
    fig.update_yaxes(title_text=metric_label(ACC), row=1, col=1)
    n_bad = len(results) - len(table)
    notes = [f"{len(table)} usable trials"]
    if n_bad:
        notes.append(f"{n_bad} trials not plotted (diverged, errored or NaN accuracy)")
    if not costs:
        notes.append("no params / throughput column: no Pareto front")
    return finish(fig, "Search: Pareto front of accuracy against cost", notes, 600)


def importance_figure(importances: pd.Series, method: str, notes: Sequence[str] = ()) -> go.Figure:
    """Horizontal bars of parameter importances (largest on top); `method` names how they
    were computed (shown as the x-axis title)."""
    imp = importances.sort_values()
    fig = go.Figure(
        go.Bar(
            x=imp.to_numpy(),
            y=[str(i) for i in imp.index],
            orientation="h",
            text=[f"{v:.3f}" for v in imp],
            textposition="auto",
            marker={"color": "#1f77b4"},
            hovertemplate="%{y}: %{x:.4f}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text=method)
    height = max(350, 60 + 40 * len(imp))
    return finish(fig, "Search: parameter importances", list(notes), height)
