"""The figures of an ensemble assembled from a sweep's trials (analysis.ensemble): the
comparison on the test split as a table, the greedy selection step by step, and how often each
trial was picked."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analysis.ensemble import tables as T
from analysis.figures.style import color, finish, fmt_metric
from core import columns as C

METRIC_TEXT = {"nll": "NLL", "acc": "accuracy", "ece": "ECE", "disagreement": "disagreement"}
SHOWN = ("acc", "nll", "ece")


def comparison_figure(comparison: pd.DataFrame, metric: str) -> go.Figure:
    """The greedy ensemble, the best single trial and the best ensemble-kind trial: their
    validation `metric` (what chose them) and their test accuracy, NLL, ECE, disagreement."""
    columns = [
        ("", T.ENTRY, None),
        ("trials (distinct)", T.DISTINCT, None),
        ("members", T.SIZE, None),
        (f"val {METRIC_TEXT[metric]}", T.split_column(C.VAL, metric), 4),
        *[(f"test {METRIC_TEXT[k]}", T.split_column(C.TEST, k), 4) for k in SHOWN],
        ("test disagreement", T.split_column(C.TEST, "disagreement"), 3),
    ]
    cells = [
        [fmt_metric(v, d) if d is not None else str(v) for v in comparison[col]]
        for _, col, d in columns
    ]
    fig = go.Figure(
        go.Table(
            header={"values": [h for h, _, _ in columns], "align": "left"},
            cells={"values": cells, "align": "left"},
        )
    )
    return finish(fig, "Test split: the greedy ensemble against the best trials", height=320)


def selection_figure(steps: pd.DataFrame, metric: str) -> go.Figure:
    """The validation `metric` of the ensemble after each greedy step (which chose the size),
    and the test metric of the same ensembles, the chosen size marked."""
    fig = go.Figure()
    for i, split in enumerate((C.VAL, C.TEST)):
        col = T.split_column(split, metric)
        fig.add_trace(
            go.Scatter(
                x=steps[T.STEP],
                y=steps[col],
                mode="lines+markers",
                name=f"{split} {METRIC_TEXT[metric]}",
                line={"color": color(i), "dash": "solid" if split == C.VAL else "dot"},
                customdata=steps[[T.ADDED]],
                hovertemplate="step %{x}: added %{customdata[0]}<br>%{y:.4f}<extra></extra>",
            )
        )
    chosen = steps.loc[steps[T.CHOSEN], T.STEP]
    if len(chosen):
        fig.add_vline(x=int(chosen.iloc[0]), line_dash="dash", annotation_text="chosen size")
    fig.update_xaxes(title="ensemble size (greedy step; members with repeats)", dtick=1)
    fig.update_yaxes(title=METRIC_TEXT[metric])
    return finish(
        fig,
        f"Greedy selection on validation {METRIC_TEXT[metric]}",
        subtitle="the size is chosen on validation; the test curve is shown, never used",
        height=450,
    )


def members_figure(members: pd.DataFrame) -> go.Figure:
    """How many times each selected trial is in the ensemble (its weight is that / size)."""
    fig = go.Figure(
        go.Bar(
            x=members[C.TRIAL_ID],
            y=members[T.TIMES_PICKED],
            marker_color=color(0),
            hovertemplate="%{x}: picked %{y} time(s)<extra></extra>",
        )
    )
    fig.update_xaxes(title="trial", type="category")
    fig.update_yaxes(title="times picked", dtick=1)
    return finish(fig, "The ensemble's members", height=400)
