"""Ensemble size x learning rate: metric vs ensemble size, one line per learning rate."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.aggregate import aggregate, asha_note, excluded_notes, unusable_reason
from analysis.figures.style import color, finish, mark_below
from analysis.schema import metric_label
from analysis.tidy import fmt_value, order_values
from core.columns import AVG, FINAL, TEST_ACC, TEST_LOSS, summary_column

LINE_METRICS = tuple(summary_column(p, m) for m in (TEST_ACC, TEST_LOSS) for p in (FINAL, AVG))
NEEDS = ("ensemble_size", "lr")  # results columns the lines need (analysis.study_pages checks them)


def _with_lines(results: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Rows with a `line` key: the learning rate, plus the ensemble type when several
    multi-member types are compared ('single' rows, size 1, join every such line)."""
    df = results.copy()
    types = [e for e in df.get("ensemble", pd.Series(dtype=object)).unique() if e != "single"]
    lrs = order_values("lr", df["lr"])
    if len(types) <= 1:
        df["line"] = df["lr"].map(lambda v: f"lr={fmt_value(v)}")
        return df, [f"lr={fmt_value(v)}" for v in lrs]
    parts = []
    for t in order_values("ensemble", types):
        part = df[df["ensemble"].isin([t, "single"])].copy()
        part["line"] = part["lr"].map(lambda v, t=t: f"lr={fmt_value(v)} · {t}")
        parts.append(part)
    lines = [f"lr={fmt_value(v)} · {t}" for t in order_values("ensemble", types) for v in lrs]
    return pd.concat(parts, ignore_index=True), lines


def ensemble_size_table(
    results: pd.DataFrame, metrics: Sequence[str] = LINE_METRICS
) -> pd.DataFrame:
    """Per (line, ensemble_size): mean/std/n of each metric over seeds, stacked."""
    df, _ = _with_lines(results)
    present = [m for m in metrics if m in df]
    return pd.concat([aggregate(df, ["line", "ensemble_size"], m) for m in present])


def _line(s: pd.DataFrame, line: str, colour: str, showlegend: bool) -> go.Scatter:
    """One line's mean per ensemble size, std error bars, n of n_trials on hover."""
    x = [fmt_value(v) for v in s["ensemble_size"]]
    err = [v if pd.notna(v) else None for v in s["std"]]
    return go.Scatter(
        x=x,
        y=s["mean"],
        error_y={"type": "data", "array": err, "visible": True},
        customdata=list(zip(s["n"], s["n_trials"], s["std"], strict=True)),
        mode="lines+markers",
        name=line,
        legendgroup=line,
        showlegend=showlegend,
        line={"color": colour},
        hovertemplate=(
            f"{line}<br>ensemble size %{{x}}<br>mean=%{{y:.4f}}"
            "<br>std=%{customdata[2]:.4f}<br>n=%{customdata[0]} of "
            "%{customdata[1]}<extra></extra>"
        ),
    )


def _mark_gaps(
    fig: go.Figure, r: int, c: int, s: pd.DataFrame, line: str, sizes: list[str]
) -> None:
    """A ✕ at the bottom of panel (r, c) for each size of `line` without a usable trial."""
    xref = fig.get_subplot(r, c).xaxis.plotly_name.replace("axis", "")
    yref = fig.get_subplot(r, c).yaxis.plotly_name.replace("axis", "")
    for _, row in s[s["n"] == 0].iterrows():
        size = fmt_value(row["ensemble_size"])
        why = f"{line}, size {size}: no usable trial ({unusable_reason(row)})"
        text = f"✕ {line}: {unusable_reason(row)}"
        mark_below(fig, xref, yref, sizes.index(size), text, why)


def ensemble_size_lines(
    results: pd.DataFrame,
    metrics: Sequence[str] = LINE_METRICS,
    title: str = "Ensemble size x learning rate (mean ± std over seeds)",
) -> go.Figure:
    """2 x 2 grid (final / average accuracy and loss) of metric vs ensemble size
    (categorical, ascending), one line per learning rate with std error bars across seeds.
    A point with no usable trial is a gap in its line, marked ✕ at the bottom."""
    metrics = [m for m in metrics if m in results]
    df, lines = _with_lines(results)
    sizes = [fmt_value(s) for s in order_values("ensemble_size", df["ensemble_size"])]
    cols = 2 if len(metrics) > 1 else 1
    rows = (len(metrics) + cols - 1) // cols
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[metric_label(m) for m in metrics],
        vertical_spacing=0.14,
        horizontal_spacing=0.1,
    )
    all_stats = []
    for k, metric in enumerate(metrics):
        r, c = k // cols + 1, k % cols + 1
        stats = aggregate(df, ["line", "ensemble_size"], metric)
        for li, line in enumerate(lines):
            s = stats[stats["line"] == line]
            if s.empty:
                continue
            fig.add_trace(_line(s, line, color(li), showlegend=k == 0), row=r, col=c)
            _mark_gaps(fig, r, c, s, line, sizes)
        all_stats.append(stats)
    fig.update_xaxes(
        type="category", categoryorder="array", categoryarray=sizes, title_text="ensemble size"
    )
    notes = excluded_notes(all_stats)
    notes += [n for n in dict.fromkeys(asha_note(s) for s in all_stats) if n]
    unique = list(dict.fromkeys(notes))
    return finish(fig, title, unique, 800)
