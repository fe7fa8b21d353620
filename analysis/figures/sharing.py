"""Sharing regimes: accuracy, distinct parameters and throughput per regime, side by side."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.aggregate import aggregate, asha_note, excluded_note, unusable_reason
from analysis.figures.style import color, finish, mark_below
from analysis.schema import metric_label
from analysis.tidy import (
    OUTCOME_TEXT,
    group_label,
    is_usable,
    order_values,
    regime_label,
    sort_frame,
)
from core.columns import (
    BATCHES_PER_S,
    CALIB_BATCHES_PER_S,
    FINAL_TEST_ACC,
    PARAMS,
    TRAIN_FLOPS_PER_IMAGE,
    TRIAL_ID,
)

SHARING_METRICS = (FINAL_TEST_ACC, PARAMS, BATCHES_PER_S)
# Results columns the boxes need (analysis.study_pages checks them).
NEEDS = ("sharing_network", "sharing_ensemble", *SHARING_METRICS)


def timed_alone(results: pd.DataFrame) -> bool:
    """Whether the study timed each regime alone after its trials (calib_batches_per_s)."""
    return CALIB_BATCHES_PER_S in results and bool(results[CALIB_BATCHES_PER_S].notna().any())


def sharing_metrics(results: pd.DataFrame) -> tuple[str, ...]:
    """The panels: accuracy, parameters, training FLOPs per image (where reported) and
    throughput, timed alone where the study did so (the trials' own batches/s shared the node
    with other trials), else the trials' own."""
    speed = CALIB_BATCHES_PER_S if timed_alone(results) else BATCHES_PER_S
    flops = TRAIN_FLOPS_PER_IMAGE in results and bool(results[TRAIN_FLOPS_PER_IMAGE].notna().any())
    return (FINAL_TEST_ACC, PARAMS, *([TRAIN_FLOPS_PER_IMAGE] if flops else []), speed)


def regimes(results: pd.DataFrame) -> list[str]:
    """Regime labels in config order (network sharing first, then ensemble sharing)."""
    nets = order_values("sharing_network", results["sharing_network"])
    enss = order_values("sharing_ensemble", results["sharing_ensemble"])
    present = set(results["regime"])
    return [regime_label(n, e) for n in nets for e in enss if regime_label(n, e) in present]


def sharing_table(
    results: pd.DataFrame, others: Sequence[str] = (), metrics: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per regime (and `others`): mean/std/n of accuracy, parameters and batches/s (timed
    alone, when the study did so, and the trials' own), or `metrics` (e.g. robustness)."""
    by = ["sharing_network", "sharing_ensemble", *others]
    if metrics is None:
        metrics = list(dict.fromkeys([*sharing_metrics(results), BATCHES_PER_S]))
    return pd.concat([aggregate(results, by, m) for m in metrics if m in results])


def sharing_boxes(
    results: pd.DataFrame,
    others: Sequence[str] = (),
    metrics: Sequence[str] | None = None,
    title: str = "Sharing regimes (network x ensemble sharing), across seeds",
) -> go.Figure:
    """Three panels side by side (final test accuracy, distinct parameters, batches/s), one
    box per regime (sharing_network x sharing_ensemble) across seeds, every trial a point.
    `others`: further varying config columns, added to the x labels. Diverged / errored
    trials are left out of accuracy (params and throughput stay: they are still measured).
    `metrics`: other panels, e.g. corrupted accuracy and OOD AUROC (default: accuracy,
    parameters and batches/s, timed alone where the study did so)."""
    metrics = [m for m in (metrics or sharing_metrics(results)) if m in results]
    fig = make_subplots(
        rows=1,
        cols=len(metrics),
        subplot_titles=[metric_label(m) for m in metrics],
        horizontal_spacing=0.08,
    )
    order = regimes(results)
    others = list(others)
    notes: list[str | None] = []
    cats = _categories(results, order, others)
    for k, metric in enumerate(metrics):
        usable = is_usable(results, metric)
        for ri, regime in enumerate(order):
            sel = results[(results["regime"] == regime) & usable]
            x = [
                regime if not others else f"{regime}<br>{group_label(r, others)}"
                for r in sel[others].to_dict("records")
            ]
            fig.add_trace(
                go.Box(
                    x=x,
                    y=sel[metric],
                    name=regime,
                    legendgroup=regime,
                    showlegend=k == 0,
                    boxpoints="all",
                    jitter=0.3,
                    pointpos=0,
                    marker={"color": color(ri), "size": 5},
                    hovertext=[
                        f"trial {t}, seed {s}, {OUTCOME_TEXT[o]}"
                        for t, s, o in zip(sel[TRIAL_ID], sel["seed"], sel["outcome"], strict=True)
                    ],
                ),
                row=1,
                col=k + 1,
            )
        stats = aggregate(results, ["regime", *others], metric)
        for _, row in stats[stats["n"] == 0].iterrows():
            lab = row["regime"] if not others else f"{row['regime']}<br>{group_label(row, others)}"
            xref = "x" if k == 0 else f"x{k + 1}"
            yref = "y" if k == 0 else f"y{k + 1}"
            if lab in cats:
                why = unusable_reason(row)
                mark_below(fig, xref, yref, cats.index(lab), f"✕ {why}", f"{lab}: {why}")
        notes += [excluded_note(stats), asha_note(stats)]
    fig.update_xaxes(tickangle=-30, type="category", categoryorder="array", categoryarray=cats)
    fig.update_layout(boxmode="overlay", legend={"orientation": "h", "y": -0.3})
    unique = list(dict.fromkeys(n for n in notes if n))
    return finish(fig, title, unique, 650)


def _categories(results: pd.DataFrame, order: list[str], others: list[str]) -> list[str]:
    """x categories in regime order (then `others` in study order)."""
    if not others:
        return list(order)
    out = []
    for regime in order:
        sel = results[results["regime"] == regime]
        for r in sort_frame(sel, others)[others].to_dict("records"):
            lab = f"{regime}<br>{group_label(r, others)}"
            if lab not in out:
                out.append(lab)
    return out
