"""alpha x gamma heatmaps: one metric per figure, axes in the fast-weight sweep order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.aggregate import aggregate, asha_note, excluded_note, spread_caveat
from analysis.figures.style import finish, fmt_metric, hatch_shapes, heatmap_look
from analysis.schema import metric_label
from analysis.tidy import fmt_value, order_values
from core.columns import AVG, FINAL, TEST, TEST_ACC, TEST_LOSS, split_metric, summary_column

HEATMAP_METRICS = (
    summary_column(FINAL, TEST_ACC),
    summary_column(AVG, TEST_ACC),
    summary_column(FINAL, TEST_LOSS),
    summary_column(AVG, TEST_LOSS),
    summary_column(FINAL, split_metric(TEST, "ece")),
    summary_column(FINAL, split_metric(TEST, "disagreement")),
)
NEEDS = ("alpha", "gamma")  # results columns the heatmaps need (analysis.study_pages checks them)


def alpha_gamma_table(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (alpha, gamma) cell: mean/std/n of `metric` and the excluded trials by reason."""
    return aggregate(results, ["alpha", "gamma"], metric)


def _cell_detail(row: pd.Series) -> str:
    parts = []
    if row["n_diverged"]:
        parts.append(f"{row['n_diverged']} diverged")
    if row["n_error"]:
        parts.append(f"{row['n_error']} errored")
    if row["n_nan"]:
        parts.append(f"{row['n_nan']} NaN value")
    text = ("excluded: " + ", ".join(parts)) if parts else ""
    if row["n_asha"]:
        asha = f"{row['n_asha']} stopped by ASHA after {int(row['min_epochs_asha'])}+ epochs"
        text = f"{text}<br>{asha}" if text else asha
    return text


def _missing_label(row: pd.Series) -> str:
    counts = {"diverged": row["n_diverged"], "error": row["n_error"], "NaN": row["n_nan"]}
    return max(counts, key=lambda k: counts[k])


@dataclass
class _Grid:
    """The heatmap's cells: z (NaN where unusable), annotations, hover data, and the cells to
    hatch (`unusable`: (i, j, label, hover)) or outline (`flagged`: ASHA-stopped)."""

    ylab: list[str]
    xlab: list[str]
    z: np.ndarray
    text: list[list[str]]
    custom: np.ndarray
    unusable: list[tuple[int, int, str, str]] = field(default_factory=list)
    flagged: list[tuple[int, int]] = field(default_factory=list)


def _grid(stats: pd.DataFrame, ylab: list[str], xlab: list[str]) -> _Grid:
    """Fill the cells from the per-(alpha, gamma) stats; a cell no row names is 'no trial'."""
    custom = np.empty((len(ylab), len(xlab), 4), dtype=object)
    custom[:, :, 0] = "–"
    custom[:, :, 1] = 0
    custom[:, :, 2] = 0
    custom[:, :, 3] = "no trial"
    g = _Grid(
        ylab,
        xlab,
        z=np.full((len(ylab), len(xlab)), np.nan),
        text=[["" for _ in xlab] for _ in ylab],
        custom=custom,
    )
    seen = set()
    for _, row in stats.iterrows():
        i, j = ylab.index(fmt_value(row["alpha"])), xlab.index(fmt_value(row["gamma"]))
        seen.add((i, j))
        detail = _cell_detail(row)
        g.custom[i, j] = [fmt_metric(row["std"], 4), int(row["n"]), int(row["n_trials"]), detail]
        if row["n"] == 0:
            g.unusable.append((i, j, _missing_label(row), detail))
            continue
        g.z[i, j] = row["mean"]
        mark = ("†" if row["n_asha"] else "") + ("*" if row["n"] < row["n_trials"] else "")
        g.text[i][j] = fmt_metric(row["mean"]) + mark
        if row["n_asha"]:
            g.flagged.append((i, j))
    for i in range(len(ylab)):
        for j in range(len(xlab)):
            if (i, j) not in seen:
                g.unusable.append((i, j, "no trial", "no trial in this cell"))
    return g


def _heatmap(g: _Grid, metric: str, label: str) -> go.Heatmap:
    return go.Heatmap(
        z=g.z,
        x=g.xlab,
        y=g.ylab,
        text=g.text,
        texttemplate="%{text}",
        textfont={"size": 12},
        customdata=g.custom,
        hovertemplate=(
            "alpha=%{y}, gamma=%{x}<br>mean=%{z:.4f}<br>std=%{customdata[0]}"
            "<br>n=%{customdata[1]} of %{customdata[2]} trials<br>%{customdata[3]}"
            "<extra></extra>"
        ),
        **heatmap_look(metric, label),
    )


def _unusable_labels(g: _Grid) -> go.Scatter:
    """The text over each hatched cell ('diverged' / 'error' / 'NaN' / 'no trial')."""
    return go.Scatter(
        x=[g.xlab[j] for _, j, _, _ in g.unusable],
        y=[g.ylab[i] for i, _, _, _ in g.unusable],
        mode="text",
        text=[lab for _, _, lab, _ in g.unusable],
        textfont={"size": 10, "color": "#444"},
        hovertext=[
            f"alpha={g.ylab[i]}, gamma={g.xlab[j]}<br>no usable value<br>{h}"
            for i, j, _, h in g.unusable
        ],
        hoverinfo="text",
        name="no usable value (hatched)",
        showlegend=False,
    )


def _notes(stats: pd.DataFrame, g: _Grid) -> list[str]:
    """Excluded trials, partial (*) and ASHA (†) cells, hatched cells and cells not run."""
    n_partial = int(((stats["n"] > 0) & (stats["n"] < stats["n_trials"])).sum())
    n_cells = sum(1 for u in g.unusable if u[2] != "no trial")
    n_empty = len(g.unusable) - n_cells
    notes = [
        excluded_note(stats),
        f"{n_partial} cell{'s' if n_partial != 1 else ''} marked * average only their usable "
        "trials (hover for why)"
        if n_partial
        else None,
        asha_note(stats, "marked † and outlined"),
        f"{n_cells} cell{'s' if n_cells != 1 else ''} without a usable value (hatched)"
        if n_cells
        else None,
        f"{n_empty} cell{'s' if n_empty != 1 else ''} of the grid not run (hatched, 'no trial')"
        if n_empty
        else None,
    ]
    return [n for n in notes if n]


def alpha_gamma_heatmap(
    results: pd.DataFrame,
    metric: str = HEATMAP_METRICS[0],
    alphas: Sequence[Any] | None = None,
    gammas: Sequence[Any] | None = None,
    subtitle: str = "",
) -> go.Figure:
    """Heatmap of `metric` (mean over seeds) with alpha on y and gamma on x, both categorical
    in FAST_WEIGHT_SWEEP order (only the values present, or `alphas` / `gammas`; None last).

    Cells are annotated with the mean (`†`: includes ASHA-stopped trials, also outlined;
    `*`: some trials excluded); hover shows mean, std, n of n_trials and why trials were
    excluded. A cell without a usable value is NaN in z (never 0), hatched grey and labelled
    'diverged' / 'error' / 'NaN' / 'no trial'."""
    stats = alpha_gamma_table(results, metric)
    alphas = list(alphas) if alphas is not None else order_values("alpha", results["alpha"])
    gammas = list(gammas) if gammas is not None else order_values("gamma", results["gamma"])
    ylab = [fmt_value(a) for a in alphas]
    xlab = [fmt_value(g) for g in gammas]
    g = _grid(stats, ylab, xlab)
    label = metric_label(metric)
    fig = go.Figure(_heatmap(g, metric, label))
    shapes = [s for i, j, _, _ in g.unusable for s in hatch_shapes(j, i)]
    shapes += [s for i, j in g.flagged for s in hatch_shapes(j, i, dashed_only=True)]
    fig.update_layout(shapes=shapes)
    if g.unusable:
        fig.add_trace(_unusable_labels(g))
    axis = {"type": "category", "categoryorder": "array", "showgrid": False}
    fig.update_xaxes(axis, categoryarray=xlab, title_text="gamma (output-side fast-weight init)")
    fig.update_yaxes(axis, categoryarray=ylab, title_text="alpha (input-side fast-weight init)")
    seeds = int(stats["n_trials"].max()) if len(stats) else 0
    title = f"{label}: alpha x gamma" + (f" ({subtitle})" if subtitle else "")
    if seeds > 1:
        title += f" — mean over up to {seeds} seeds"
    caveat = spread_caveat(stats) or ""
    return finish(fig, title, _notes(stats, g), height=760, subtitle=caveat)
