"""Optimizers: training and validation curves, one line per optimizer x model."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.figures.style import UNUSABLE_COLOR, color, epoch_ticks, finish, mark_below
from analysis.tidy import ASHA_STOPPED, DIVERGED, ERROR, order_values
from core.columns import (
    EPOCH,
    TEST,
    TEST_ACC,
    TEST_LOSS,
    TRAIN_ACC,
    TRAIN_LOSS,
    TRIAL_ID,
    VAL,
    VAL_ACC,
    split_metric,
)

# History columns the curves need (analysis.study_pages checks them; val_* are used when present).
NEEDS = ("optimizer", "model", EPOCH, TRAIN_ACC, TRAIN_LOSS, TEST_ACC, TEST_LOSS)
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def eval_split(history: pd.DataFrame) -> str:
    """'val' when any validation metric was reported, else 'test' (no validation split)."""
    has_val = VAL_ACC in history and history[VAL_ACC].notna().any()
    return VAL if has_val else TEST


def _usable_epochs(history: pd.DataFrame, metric: str) -> pd.Series:
    ok = pd.to_numeric(history[metric], errors="coerce").notna()
    if "diverged_epoch" in history:
        ok &= ~history["diverged_epoch"].astype(bool)
    if "outcome" in history:
        ok &= ~history["outcome"].eq(ERROR)
    return ok


def optimizer_table(history: pd.DataFrame) -> pd.DataFrame:
    """Per (optimizer, model, epoch, metric): mean/std/n over trials (seeds). Epochs at which
    a trial diverged, and NaN values, are left out."""
    split = eval_split(history)
    metrics = [TRAIN_ACC, TRAIN_LOSS, split_metric(split, "acc"), split_metric(split, "loss")]
    parts = []
    for m in metrics:
        ok = history[_usable_epochs(history, m)]
        g = ok.groupby(["optimizer", "model", EPOCH], sort=True)[m]
        part = g.agg(["mean", "std", "count"]).reset_index().rename(columns={"count": "n"})
        part.insert(3, "metric", m)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def optimizer_curves(history: pd.DataFrame) -> go.Figure:
    """2 x 2 grid: training / validation (or test, when no trial had a validation split)
    accuracy and loss against epoch; one line per optimizer x model (colour: optimizer,
    dash: model), the mean over seeds with std in the hover. Divergence points are ✕."""
    split = eval_split(history)
    eval_name = "validation" if split == VAL else "test (no validation split)"
    panels = [
        (TRAIN_ACC, "training accuracy"),
        (split_metric(split, "acc"), f"{eval_name} accuracy"),
        (TRAIN_LOSS, "training loss"),
        (split_metric(split, "loss"), f"{eval_name} loss"),
    ]
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=[t for _, t in panels],
        vertical_spacing=0.14,
        horizontal_spacing=0.1,
    )
    table = optimizer_table(history)
    optimizers = order_values("optimizer", history["optimizer"])
    models = order_values("model", history["model"])
    groups = history[["optimizer", "model"]].drop_duplicates().astype(str).agg(" · ".join, axis=1)
    shown: set[str] = set()
    for k, (metric, _) in enumerate(panels):
        r, c = k // 2 + 1, k % 2 + 1
        t = table[table["metric"] == metric]
        for oi, opt in enumerate(optimizers):
            for mi, model in enumerate(models):
                s = t[(t["optimizer"] == opt) & (t["model"] == model)]
                name = f"{opt} · {model}"
                if name not in set(groups) or s.empty:
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=s[EPOCH],
                        y=s["mean"],
                        customdata=list(zip(s["std"], s["n"], strict=True)),
                        mode="lines+markers",
                        marker={"size": 5},
                        name=name,
                        legendgroup=name,
                        showlegend=name not in shown,
                        line={"color": color(oi), "dash": DASHES[mi % len(DASHES)]},
                        hovertemplate=(
                            f"{name}<br>epoch %{{x}}<br>mean=%{{y:.4f}}<br>std=%{{customdata[0]"
                            ":.4f}<br>n=%{customdata[1]}<extra></extra>"
                        ),
                    ),
                    row=r,
                    col=c,
                )
                shown.add(name)
        _diverged_markers(fig, history, metric, r, c, first=k == 0)
    fig.update_xaxes(title_text="epoch", **epoch_ticks(history[EPOCH]))
    return finish(fig, "Optimizers: learning curves (mean over seeds)", _notes(history), 850)


def _diverged_markers(
    fig: go.Figure, history: pd.DataFrame, metric: str, r: int, c: int, first: bool
) -> None:
    if "diverged_epoch" not in history:
        return
    xs, ys, hover = [], [], []
    for tid, h in history.groupby(TRIAL_ID, sort=True):
        div = h[h["diverged_epoch"].astype(bool)]
        if div.empty:
            continue
        h = h.sort_values(EPOCH)
        at = int(div[EPOCH].min())
        before = h[h[EPOCH] < at][metric].dropna()
        who = f"trial {tid} ({h['optimizer'].iloc[0]} · {h['model'].iloc[0]})"
        if before.empty:  # diverged in its first epoch: nothing to anchor the marker on
            sub = fig.get_subplot(r, c)
            xref = sub.xaxis.plotly_name.replace("axis", "")
            yref = sub.yaxis.plotly_name.replace("axis", "")
            mark_below(fig, xref, yref, at, "✕", f"{who} diverged at epoch {at}")
            continue
        xs.append(at)
        ys.append(float(before.iloc[-1]))
        hover.append(f"{who} diverged at epoch {at} (marker at its last finite value)")
    if xs:
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="markers",
                marker={"symbol": "x", "size": 12, "color": UNUSABLE_COLOR},
                hovertext=hover,
                hoverinfo="text",
                name="diverged",
                legendgroup="diverged",
                showlegend=first,
            ),
            row=r,
            col=c,
        )


def _notes(history: pd.DataFrame) -> list[str]:
    notes = []
    if "outcome" in history:
        per_trial = history.drop_duplicates(TRIAL_ID)["outcome"]
        n_div = int(per_trial.eq(DIVERGED).sum())
        n_asha = int(per_trial.eq(ASHA_STOPPED).sum())
        if n_div:
            notes.append(
                f"{n_div} trial(s) diverged: marked ✕ where it happened; "
                "their epochs before divergence are in the means"
            )
        if n_asha:
            notes.append(f"{n_asha} trial(s) stopped early by ASHA: their curves end early")
    if eval_split(history) == TEST:
        notes.append("no trial had a validation split: the right column shows test metrics")
    return notes
