"""Shared look of the figures, page notes and the markers for unusable trials."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from analysis.definitions import HIGHER, NEITHER, better

TEMPLATE = "plotly_white"
UNUSABLE_COLOR = "#c0392b"  # diverged / errored markers
MISSING_FILL = "#ececec"  # background of a cell without a usable value
HATCH_COLOR = "#9a9a9a"
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def higher_is_better(metric: str) -> bool:
    """From the metric's definition (analysis.definitions); throughput (…_per_s) is better
    higher too. OOD AUROC is better higher: a suffix rule on '_acc' alone got it backwards."""
    return better(metric) == HIGHER or metric.endswith("_per_s")


def colorscale(metric: str) -> str:
    """Bright = good: Viridis where higher is better, reversed where lower is; Cividis for the
    diversity metrics (disagreement, KL), where neither direction is better."""
    if better(metric) == NEITHER:
        return "Cividis"
    return "Viridis" if higher_is_better(metric) else "Viridis_r"


def heatmap_look(metric: str, label: str) -> dict[str, Any]:
    """go.Heatmap settings every heatmap shares: the metric's colour scale, a colour bar and
    trace name from its label, 2-pixel gaps between cells, and no hover on empty cells."""
    return {
        "colorscale": colorscale(metric),
        "colorbar": {"title": {"text": label, "side": "right"}},
        "xgap": 2,
        "ygap": 2,
        "hoverongaps": False,
        "name": label,
    }


def fmt_metric(value: Any, digits: int = 3) -> str:
    """'0.712'; '–' for NaN/None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}f}"


# Points in one scatter trace from which it is drawn with WebGL: SVG draws every marker as an
# element of the page, and a figure of a 10,000-trial search would take seconds to open.
WEBGL_FROM = 1000


def webgl(fig: go.Figure) -> go.Figure:
    """`fig` with each scatter trace of WEBGL_FROM points or more as a Scattergl of the same
    properties (a trace that uses what WebGL cannot draw stays SVG)."""

    def large(t: Any) -> bool:
        return t.type == "scatter" and t.x is not None and len(t.x) >= WEBGL_FROM

    if not any(large(t) for t in fig.data):
        return fig
    traces = []
    for t in fig.data:
        props = t.to_plotly_json()
        if large(t):
            props.pop("type")
            try:
                props = go.Scattergl(**props).to_plotly_json()
            except ValueError:  # a property Scattergl lacks (e.g. a spline line)
                props["type"] = "scatter"
        traces.append(props)
    # the traces replaced in place: a new Figure would validate the layout again (seconds for a
    # figure of thousands of shapes)
    fig.data = ()
    fig.add_traces(traces)
    return fig


def finish(
    fig: go.Figure, title: str, notes: Sequence[str] = (), height: int = 600, subtitle: str = ""
) -> go.Figure:
    """Common layout; `notes` go to layout.meta['notes'] (the report prints them); `subtitle`
    is drawn under the title (what the figure counts, or a caveat that must travel with it).
    Large scatter traces are drawn with WebGL (`webgl`)."""
    fig = webgl(fig)
    head: dict[str, Any] = {"text": title, "x": 0.01, "xanchor": "left"}
    if subtitle:
        head["subtitle"] = {"text": subtitle}
    fig.update_layout(
        template=TEMPLATE,
        title=head,
        height=height,
        margin={"l": 80, "r": 40, "t": 110 if subtitle else 80, "b": 80},
        hoverlabel={"align": "left"},
        meta={"notes": [n for n in notes if n]},
    )
    return fig


def get_notes(fig: go.Figure) -> list[str]:
    """The notes a figure builder attached (see finish)."""
    meta = fig.layout.meta
    if isinstance(meta, dict):
        return list(meta.get("notes", []))
    return []


def mark_below(fig: go.Figure, xref: str, yref: str, x: Any, text: str, hover: str) -> None:
    """A red text marker at the bottom of a subplot at category/position x, for a group
    whose value is unusable (so it is shown as such, never as a zero)."""
    fig.add_annotation(
        x=x,
        y=0.02,
        xref=xref,
        yref=f"{yref} domain",
        text=text,
        hovertext=hover,
        showarrow=False,
        yanchor="bottom",
        font={"color": UNUSABLE_COLOR, "size": 11},
    )


def hatch_shapes(i: float, j: float, dashed_only: bool = False) -> list[dict[str, Any]]:
    """Layout shapes hatching the heatmap cell at column index i, row index j (category
    serial numbers): grey fill + diagonal lines, drawn below the (transparent) NaN cell.
    With dashed_only: a dotted outline above the cell instead (flagged but usable, e.g.
    ASHA-stopped). Add them all at once (fig.update_layout(shapes=...)): add_shape is slow."""
    x0, x1, y0, y1 = i - 0.5, i + 0.5, j - 0.5, j + 0.5
    if dashed_only:
        d = 0.04
        line = {"color": "white", "width": 2, "dash": "dot"}
        rect = {"x0": x0 + d, "x1": x1 - d, "y0": y0 + d, "y1": y1 - d}
        return [{"type": "rect", **rect, "line": line, "layer": "above"}]
    shapes: list[dict[str, Any]] = [
        {
            "type": "rect",
            "x0": x0,
            "x1": x1,
            "y0": y0,
            "y1": y1,
            "fillcolor": MISSING_FILL,
            "line": {"width": 0},
            "layer": "below",
        }
    ]
    for k in (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75):
        # parallel 45-degree segments clipped to the cell
        a0, b0 = max(0.0, k - 1.0), min(k, 1.0)
        shapes.append(
            {
                "type": "line",
                "x0": x0 + a0,
                "y0": y0 + (k - a0),
                "x1": x0 + b0,
                "y1": y0 + (k - b0),
                "line": {"color": HATCH_COLOR, "width": 1},
                "layer": "below",
            }
        )
    return shapes


def epoch_ticks(epochs: pd.Series) -> dict[str, Any]:
    """Integer epoch ticks: every epoch up to 15, then about 10 ticks."""
    last = int(epochs.max()) if len(epochs) and pd.notna(epochs.max()) else 1
    return {"tick0": 1, "dtick": max(1, round(last / 10)) if last > 15 else 1}
