"""Methods study: each quality metric against each cost, one colour per method, with each
method's Pareto front (its cells that no other cell of the same method beats in both the
metric and the cost) and the cells on the front of all methods together starred.

A cell is a (method, budget) of the study (`extra_method`, `extra_budget` tags); its point is
the mean over its usable seeds. The cost panels are the search figure's (`cost_panels`,
`label_cost_axis`): distinct parameters, training FLOPs per image and images/s (timed alone
where the study did so, else the trials' own).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analysis.aggregate import aggregate, excluded_note
from analysis.figures.search import cost_panels, label_cost_axis
from analysis.figures.style import color, finish, higher_is_better
from analysis.schema import metric_label
from core.columns import (
    CALIB_IMAGES_PER_S,
    FINAL,
    FINAL_TEST_ACC,
    FINAL_TEST_LOSS,
    IMAGES_PER_S,
    PARAMS,
    TEST,
    TRAIN_FLOPS_PER_IMAGE,
    corrupt_metric,
    extra_column,
    ood_metric,
    split_metric,
    summary_column,
)
from core.pareto import pareto_mask

METHOD, BUDGET = extra_column("method"), extra_column("budget")
NEEDS = (METHOD, BUDGET, PARAMS, FINAL_TEST_ACC)
# accuracy, NLL, ECE, corrupted accuracy, OOD AUROC (MSP), where the results have them
METRICS = (
    FINAL_TEST_ACC,
    FINAL_TEST_LOSS,
    summary_column(FINAL, split_metric(TEST, "ece")),
    corrupt_metric("acc"),
    ood_metric("auroc", "msp"),
)


def methods_metrics(results: pd.DataFrame) -> list[str]:
    return [m for m in METRICS if m in results and results[m].notna().any()]


def methods_costs(results: pd.DataFrame) -> list[tuple[str, bool]]:
    """(cost column, larger is better): parameters, FLOPs, images/s (timed alone if done)."""
    speed = CALIB_IMAGES_PER_S
    if speed not in results or not results[speed].notna().any():
        speed = IMAGES_PER_S
    costs = [(PARAMS, False), (TRAIN_FLOPS_PER_IMAGE, False), (speed, True)]
    return [(c, up) for c, up in costs if c in results and results[c].notna().any()]


def methods_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per cell (method, budget): mean/std/n of every metric and cost, and per metric and
    cost whether the cell is on its method's front and on the front of all cells."""
    by = [METHOD, BUDGET]
    cols = [*methods_metrics(results), *(c for c, _ in methods_costs(results))]
    wide = None
    for col in cols:
        agg = aggregate(results, by, col)[[*by, "mean", "std", "n"]]
        agg = agg.rename(columns={k: f"{col}_{k}" for k in ("mean", "std", "n")})
        wide = agg if wide is None else wide.merge(agg, on=by)
    out = wide.reset_index(drop=True)
    for metric in methods_metrics(results):
        for cost, larger in methods_costs(results):
            dirs = ["max" if larger else "min", "max" if higher_is_better(metric) else "min"]
            pts = out[[f"{cost}_mean", f"{metric}_mean"]]
            out[f"front_{metric}_vs_{cost}"] = pareto_mask(pts, dirs)
            own = pd.Series(False, index=out.index)
            for _, idx in out.groupby(METHOD).groups.items():
                own[idx] = pareto_mask(pts.loc[idx], dirs)
            out[f"method_front_{metric}_vs_{cost}"] = own
    return out


def methods_figure(results: pd.DataFrame, metric: str) -> go.Figure:
    """`metric` against each cost, one colour per method: its cells (hover: the budget),
    its own Pareto front as a line, and the cells on the front of all methods starred."""
    table = methods_table(results)
    costs = methods_costs(results)
    fig = cost_panels(costs)
    y = f"{metric}_mean"
    for k, (cost, larger) in enumerate(costs):
        x, front = f"{cost}_mean", f"front_{metric}_vs_{cost}"
        for i, (method, cells) in enumerate(table.groupby(METHOD, sort=False)):
            own = cells[cells[f"method_front_{metric}_vs_{cost}"]].sort_values(x)
            fig.add_trace(
                go.Scatter(
                    x=own[x],
                    y=own[y],
                    mode="lines",
                    line={"color": color(i), "width": 1, "shape": "hv" if not larger else "vh"},
                    legendgroup=method,
                    showlegend=False,
                    hoverinfo="skip",
                ),
                row=1,
                col=k + 1,
            )
            fig.add_trace(
                go.Scatter(
                    x=cells[x],
                    y=cells[y],
                    mode="markers",
                    error_y={"type": "data", "array": cells[f"{metric}_std"], "visible": True},
                    marker={
                        "color": color(i),
                        "size": [13 if f else 8 for f in cells[front]],
                        "symbol": ["star" if f else "circle" for f in cells[front]],
                    },
                    name=str(method),
                    legendgroup=method,
                    showlegend=k == 0,
                    hovertext=[f"{method}, budget {b}" for b in cells[BUDGET]],
                ),
                row=1,
                col=k + 1,
            )
        label_cost_axis(fig, cost, larger, k + 1)
    fig.update_yaxes(title_text=metric_label(metric), row=1, col=1)
    notes = [
        "one point per cell (method, budget): the mean over its usable seeds, bars 1 std; "
        "lines: each method's Pareto front; stars: the front of all cells together",
        excluded_note(aggregate(results, [METHOD, BUDGET], metric)),
    ]
    title = f"Methods at matched cost: {metric_label(metric)}"
    return finish(fig, title, [n for n in notes if n], 550)
