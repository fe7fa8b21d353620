"""Robustness: the corruption x severity heatmap and the robustness metrics of every figure.

The heatmap shows the mean over usable trials (the seeds of each configuration, and the
configurations of `group` when given) of `corrupt_<c>_<s>_<r>`, corruptions in the
benchmark's order on y, severities 1..5 on x, the mean over severities in a last column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.aggregate import aggregate, excluded_note
from analysis.figures.style import finish, fmt_metric, heatmap_look
from analysis.schema import metric_label
from core.columns import (
    CORRUPTIONS,
    OOD_SCORES,
    SEVERITIES,
    corrupt_metric,
    ood_metric,
)

# The robustness metrics other figures can show (alpha x gamma, ensemble size, sharing).
ROBUSTNESS_FIGURE_METRICS = (
    corrupt_metric("acc"),
    corrupt_metric("ece"),
    ood_metric("auroc", "msp"),
    ood_metric("auroc", "mi"),
)
# Robustness columns of the summary and trials tables.
ROBUSTNESS_TABLE_METRICS = (
    corrupt_metric("acc"),
    corrupt_metric("loss"),
    corrupt_metric("ece"),
    *(ood_metric("auroc", s) for s in OOD_SCORES),
    *(ood_metric("fpr95", s) for s in OOD_SCORES),
)
CELL_KEYS = ("acc", "ece")  # one heatmap per key
NEEDS = tuple(corrupt_metric("acc", c, s) for c in CORRUPTIONS for s in SEVERITIES)


def measured(results: pd.DataFrame, metrics) -> list[str]:
    """The metrics of `metrics` that results hold with at least one finite value."""
    return [
        m for m in metrics if m in results and pd.to_numeric(results[m], "coerce").notna().any()
    ]


def corruption_table(results: pd.DataFrame, key: str = "acc") -> pd.DataFrame:
    """Per corruption x severity: mean/std/n over usable trials of corrupt_<c>_<s>_<key>."""
    rows = []
    for c in CORRUPTIONS:
        for s in SEVERITIES:
            col = corrupt_metric(key, c, s)
            if col not in results:
                continue
            stats = aggregate(results, [], col)
            rows.append(stats.assign(corruption=c, severity=s))
    cols = ["corruption", "severity"]
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=cols)
    return out[cols + [c for c in out.columns if c not in cols]]


def corruption_heatmap(results: pd.DataFrame, key: str = "acc", subtitle: str = "") -> go.Figure:
    """Heatmap of corrupt_<c>_<s>_<key> (mean over usable trials), corruption x severity, with
    the mean over severities as a last column; NaN cells stay empty (never 0)."""
    stats = corruption_table(results, key)
    xlab = [str(s) for s in SEVERITIES] + ["mean"]
    ylab = [c.replace("_", " ") for c in CORRUPTIONS]
    z = np.full((len(ylab), len(xlab)), np.nan)
    sd = np.full_like(z, np.nan)
    n = np.zeros_like(z)
    for _, row in stats.iterrows():
        i, j = CORRUPTIONS.index(row["corruption"]), SEVERITIES.index(row["severity"])
        if row["n"] > 0:
            z[i, j], sd[i, j], n[i, j] = row["mean"], row["std"], row["n"]
    with np.errstate(all="ignore"):
        z[:, -1] = np.nanmean(z[:, :-1], axis=1) if np.isfinite(z[:, :-1]).any() else np.nan
    text = [[fmt_metric(v) for v in r] for r in z]
    custom = np.dstack([sd, n])
    label = metric_label(corrupt_metric(key))
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=xlab,
            y=ylab,
            text=text,
            texttemplate="%{text}",
            customdata=custom,
            hovertemplate=(
                "%{y}, severity %{x}<br>mean=%{z:.4f}<br>std=%{customdata[0]:.4f}"
                "<br>n=%{customdata[1]} trials<extra></extra>"
            ),
            **heatmap_look(corrupt_metric(key), label),
        )
    )
    fig.update_xaxes(type="category", title_text="severity (CIFAR-10-C)")
    fig.update_yaxes(type="category", autorange="reversed", title_text="corruption")
    notes = []
    if len(stats):
        notes.append(excluded_note(stats.drop_duplicates("metric").head(1)))
    title = f"{label} per corruption x severity" + (f" ({subtitle})" if subtitle else "")
    return finish(fig, title + " — mean over trials", [x for x in notes if x], height=620)
