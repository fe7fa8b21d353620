"""Parallel coordinates: one line per usable trial across every swept knob, coloured by the
study's selection metric, for grids and searches alike.

Axes: a numeric knob without missing values is a numeric axis (log10 when its values are
positive and span at least LOG_SPAN, with the real values as tick text: learning rates); any
other knob (strings, booleans, None/NaN such as frozen alpha) is categorical, its values in
study order (tidy.order_values) as tick text. The last axis is the selection metric itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.figures.style import finish, fmt_metric
from analysis.schema import metric_label
from analysis.tidy import fmt_value, is_usable, order_values

LOG_SPAN = 100.0  # max/min ratio from which a positive numeric knob gets a log axis
# Lines drawn at most: past about a thousand, lines cover each other into one band and the
# figure no longer shows which knob values the good trials share. A larger study draws its
# best MAX_LINES by the metric (every trial is in trials.csv).
MAX_LINES = 1000
MAX_TICKS = 8  # tick labels of a numeric axis


def _is_numeric(values: pd.Series) -> bool:
    return (
        pd.api.types.is_numeric_dtype(values)
        and not pd.api.types.is_bool_dtype(values)
        and values.notna().all()
    )


def knob_axis(column: str, values: pd.Series) -> dict:
    """A go.Parcoords dimension for one knob (see the module doc)."""
    if _is_numeric(values):
        v = values.astype(float)
        lo, hi = float(v.min()), float(v.max())
        if lo > 0 and hi / lo >= LOG_SPAN:
            logv = np.log10(v)
            ticks = np.linspace(np.log10(lo), np.log10(hi), min(MAX_TICKS, v.nunique()))
            return {
                "label": f"{column} (log)",
                "values": logv.to_numpy(),
                "tickvals": ticks.tolist(),
                "ticktext": [f"{10**t:.3g}" for t in ticks],
            }
        return {"label": column, "values": v.to_numpy()}
    order = [fmt_value(x) for x in order_values(column, values)]
    codes = values.astype(object).map(fmt_value).map(order.index)
    return {
        "label": column,
        "values": codes.to_numpy(dtype=float),
        "tickvals": list(range(len(order))),
        "ticktext": order,
        # a single category still needs a range that shows its tick
        "range": [-0.5, len(order) - 0.5] if len(order) == 1 else [0, len(order) - 1],
    }


def parallel_coordinates(
    results: pd.DataFrame, knobs: Sequence[str], metric: str, maximise: bool = True
) -> go.Figure:
    """One line per trial usable for `metric` across `knobs` (the swept config columns) and a
    last axis of `metric`, coloured by it (bright = better)."""
    ok = results[is_usable(results, metric)]
    usable = len(ok)
    if usable > MAX_LINES:  # the best ones, the best last (drawn on top)
        ok = ok.sort_values(metric, ascending=maximise, kind="stable").tail(MAX_LINES)
    dims = [knob_axis(c, ok[c]) for c in knobs]
    y = ok[metric].astype(float)
    dims.append({"label": metric_label(metric), "values": y.to_numpy()})
    fig = go.Figure(
        go.Parcoords(
            dimensions=dims,
            line={
                "color": y.to_numpy(),
                "colorscale": "Viridis" if maximise else "Viridis_r",
                "showscale": True,
                "colorbar": {"title": {"text": metric_label(metric), "side": "right"}},
            },
            labelangle=-20,
            domain={"x": [0, 0.9]},  # the colour bar right of the last axis' tick labels
        )
    )
    left_out = len(results) - usable
    drawn = f"{len(ok)} trial{'s' if len(ok) != 1 else ''} drawn across {len(knobs)} swept knob"
    if usable > len(ok):
        drawn = f"the best {len(ok):,} of {usable:,} usable trials drawn (more lines hide each "
        drawn += f"other; every trial is in trials.csv) across {len(knobs)} swept knob"
    drawn += "s" if len(knobs) != 1 else ""
    if left_out:
        drawn += f"; {left_out} not drawn (diverged, errored or no {metric_label(metric)})"
    if len(ok):
        best = y.max() if maximise else y.min()
        drawn += f"; best {metric_label(metric)} {fmt_metric(best)}"
    title = f"Every swept knob, coloured by {metric_label(metric)}"
    fig = finish(fig, title, [], height=560, subtitle=drawn)
    fig.update_layout(margin={"t": 140, "l": 70, "r": 70})  # room for the axis labels
    return fig
