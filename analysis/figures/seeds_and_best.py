"""Figures for every study: spread across seeds, and learning curves of the best trials."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.aggregate import aggregate, asha_note, excluded_note, unusable_reason
from analysis.figures.style import (
    UNUSABLE_COLOR,
    color,
    epoch_ticks,
    finish,
    fmt_metric,
    mark_below,
)
from analysis.schema import metric_label
from analysis.tidy import OUTCOME_TEXT, fmt_value, group_label, is_usable, sort_frame
from core.columns import EPOCH, FINAL_TEST_ACC, SELECTION_COLUMN, TEST_ACC, TEST_LOSS, TRIAL_ID


def seed_table(results: pd.DataFrame, by: Sequence[str], metric: str) -> pd.DataFrame:
    """Per config group (`by`, seeds pooled): mean/std/n of `metric` and exclusions."""
    return aggregate(results, by, metric)


def seed_boxes(results: pd.DataFrame, by: Sequence[str], metric: str = FINAL_TEST_ACC) -> go.Figure:
    """One box per config group (`by`: the varying config columns, seed excluded) showing
    `metric` across seeds, every seed drawn as a point. Diverged / errored / NaN trials are
    not in the boxes; a group left with none is marked in red at the bottom."""
    by = list(by)
    df = sort_frame(results, by)
    usable = is_usable(df, metric)
    labels = [group_label(r, by) for r in df[by].to_dict("records")]
    df = df.assign(_label=labels)
    order = list(dict.fromkeys(labels))
    ok = df[usable.loc[df.index]]
    hover = [
        f"trial {t}<br>seed={fmt_value(s)}<br>{OUTCOME_TEXT[o]}"
        for t, s, o in zip(ok[TRIAL_ID], ok["seed"], ok["outcome"], strict=True)
    ]
    fig = go.Figure(
        go.Box(
            x=ok["_label"],
            y=ok[metric],
            boxpoints="all",
            jitter=0.3,
            pointpos=0,
            marker={"size": 5},
            hovertext=hover,
            name=metric_label(metric),
            showlegend=False,
        )
    )
    stats = aggregate(results, by, metric)
    stats["_label"] = [group_label(r, by) for r in stats[by].to_dict("records")]
    for _, row in stats[stats["n"] == 0].iterrows():
        why = unusable_reason(row)
        mark_below(fig, "x", "y", order.index(row["_label"]), "✕", f"{row['_label']}: {why}")
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=order, tickangle=-45)
    fig.update_yaxes(title_text=metric_label(metric))
    notes = [excluded_note(stats), asha_note(stats)]
    title = f"{metric_label(metric)} across seeds, per configuration"
    return finish(fig, title, [n for n in notes if n], height=650)


def best_trial_curves(
    results: pd.DataFrame,
    history: pd.DataFrame,
    by: Sequence[str],
    k: int = 5,
    metric: str = SELECTION_COLUMN,
) -> go.Figure:
    """Test accuracy and loss against epoch of the top `k` usable trials by `metric` (a
    validation metric: selection never reads the test set), each labelled by its `by` config
    values and seed."""
    if metric.split("_", 1)[-1].startswith("test_") or metric.startswith("test_"):
        raise ValueError(f"metric={metric!r}: trials are ranked by a validation metric only")
    ok = results[is_usable(results, metric)]
    top = ok.sort_values(metric, ascending=False, kind="stable").head(k)
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("test accuracy", "test loss (NLL)"), horizontal_spacing=0.1
    )
    for rank, (_, tr) in enumerate(top.iterrows()):
        h = history[history[TRIAL_ID] == tr[TRIAL_ID]].sort_values(EPOCH)
        cols = [*by, "seed"] if "seed" not in by else list(by)
        name = f"#{rank + 1} {group_label(tr, cols)} ({fmt_metric(tr[metric])})"
        for col, m in ((1, TEST_ACC), (2, TEST_LOSS)):
            fig.add_trace(
                go.Scatter(
                    x=h[EPOCH],
                    y=h[m],
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=col == 1,
                    line={"color": color(rank)},
                    hovertemplate=f"{name}<br>epoch %{{x}}<br>{m}=%{{y:.4f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
            div = h[h.get("diverged_epoch", pd.Series(False, index=h.index)).astype(bool)]
            if len(div):
                fig.add_trace(
                    go.Scatter(
                        x=div[EPOCH],
                        y=h[m].ffill().loc[div.index],
                        mode="markers",
                        marker={"symbol": "x", "size": 11, "color": UNUSABLE_COLOR},
                        name="diverged",
                        showlegend=False,
                    ),
                    row=1,
                    col=col,
                )
    fig.update_xaxes(title_text="epoch", **epoch_ticks(history[EPOCH]))
    fig.update_layout(legend={"orientation": "h", "y": -0.2})
    n_bad = int((~is_usable(results, metric)).sum())
    notes = [f"top {len(top)} of {len(ok)} usable trials by {metric_label(metric)}"]
    if n_bad:
        notes.append(f"{n_bad} trials not ranked (diverged, errored or NaN)")
    return finish(fig, f"Learning curves of the best {len(top)} trials", notes, height=600)
