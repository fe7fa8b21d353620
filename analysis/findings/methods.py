"""The methods study (findings/learn/methods/): which way of sharing is best at a given cost.
Single network, deep ensemble, BatchEnsemble, shared trunk, Packed-Ensembles and MIMO at M = 4,
at two budgets (tune_jobs/methods.py): `params`, about one network's distinct parameters, and
`flops`, about M networks' training FLOPs per image; BatchEnsemble and MIMO (`both`) are at
both at once, the single network is the reference.

At a budget the cells cost about the same, so its front is its most accurate cells: the best
cell on validation accuracy against each other cell of the budget (paired by seed), in test
accuracy and NLL; a cell not separable from the best is on the front within seed noise. Then
the published order (uncertainty-baselines at WRN-28-10: deep > MIMO > BatchEnsemble > single
in accuracy and in NLL), each neighbouring pair tested in the order's direction.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analysis.figures.methods import BUDGET, METHOD, methods_costs, methods_table
from analysis.findings.data import FINDINGS, best_on_validation, first_value, results, rows_where
from analysis.findings.statistics import (
    ACC,
    AUROC,
    CORRUPT_ACC,
    ECE,
    NLL,
    table,
)
from analysis.findings.verdicts import Comparison, block, compare, family
from core import columns as C

STUDY = "methods"
PICTURE_PAGE = "methods"  # the report page of docs/findings/learn/methods.png
SCALE_KEYS = ("learn",)  # run at the learn scale only (the CPU scale's networks underfit)

COLUMNS = (ACC, NLL, ECE, CORRUPT_ACC, AUROC)
BUDGETS = {
    "params": "about one network's distinct parameters",
    "flops": "about 4 networks' training FLOPs per image",
}
ORDER = ("reference", "both", "params", "flops")  # the budgets, in the table's order
# uncertainty-baselines, baselines/cifar/README.md, CIFAR-10, WRN-28-10, one run each:
# (method, budget of our cell it is compared with, accuracy %, NLL)
PUBLISHED = (
    ("deep", "flops", "96.6", "0.114"),
    ("mimo", "both", "96.4", "0.123"),
    ("batch", "both", "96.3", "0.136"),
    ("single", "reference", "96.0", "0.159"),
)


def _cells(df: pd.DataFrame) -> list[tuple[str, str]]:
    cells = {(m, b) for m, b in zip(df[METHOD], df[BUDGET], strict=True)}
    return sorted(cells, key=lambda c: (ORDER.index(c[1]) if c[1] in ORDER else 99, c[0]))


def _rows(df: pd.DataFrame, cell: tuple[str, str]) -> pd.Series:
    return rows_where(df, **{METHOD: cell[0], BUDGET: cell[1]})


def _label(cell: tuple[str, str]) -> str:
    return f"{cell[0]} ({cell[1]})"


def cells_table(root: Path = FINDINGS) -> str:
    """Each cell's metrics, then its costs and whether it is on the front of all cells (means
    over seeds; a selection of points, no test)."""
    df = results(STUDY, root)
    cells = _cells(df)
    out = table([(_label(c), _rows(df, c)) for c in cells], df, COLUMNS, "method (budget)")
    fronts = methods_table(df).set_index([METHOD, BUDGET])
    # the speed the report's fronts use: timed alone after the trials, else the trials' own
    speed = next((c for c, larger in methods_costs(df) if larger), C.CALIB_IMAGES_PER_S)
    costs = ((C.PARAMS, "params"), (C.TRAIN_FLOPS_PER_IMAGE, "FLOPs"), (speed, "images/s"))
    timed = "timed alone" if speed == C.CALIB_IMAGES_PER_S else "in the trials"
    lines = [
        "",
        f"| method (budget) | distinct parameters | training MFLOPs per image | images/s {timed} "
        "| on the accuracy front against |",
        "| --- | --- | --- | --- | --- |",
    ]
    for cell in cells:
        mask = _rows(df, cell)
        p = first_value(df, mask, C.PARAMS)
        flops = first_value(df, mask, C.TRAIN_FLOPS_PER_IMAGE) / 1e6
        ips = first_value(df, mask, speed) if speed in df else math.nan
        on = [
            name
            for col, name in costs
            if fronts.get(f"front_{ACC}_vs_{col}", pd.Series(dtype=bool)).get(cell, False)
        ]
        lines.append(
            f"| {_label(cell)} | {p:,.0f} | {flops:,.1f} | {ips:,.0f} | {', '.join(on) or 'none'} |"
        )
    return out + "\n".join(lines) + "\n"


def _num(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "-"


def _best(df: pd.DataFrame, cells: list[tuple[str, str]]) -> tuple[str, str]:
    """The cell of highest mean validation accuracy among `cells`."""
    among = pd.Series(False, index=df.index)
    for cell in cells:
        among |= _rows(df, cell)
    method, budget = best_on_validation(df, [METHOD, BUDGET], among)
    return str(method), str(budget)


def _budget_tests(df: pd.DataFrame, budget: str) -> tuple[tuple[str, str], list[Comparison]]:
    cells = [c for c in _cells(df) if c[1] in (budget, "both")]
    best = _best(df, cells)
    tests = [
        compare(
            df,
            _rows(df, best),
            _rows(df, other),
            col,
            f"{_label(best)} - {_label(other)}",
            None,
            (best[0], other[0]),
        )
        for other in cells
        if other != best
        for col in (ACC, NLL)
    ]
    return best, tests


def _published_tests(df: pd.DataFrame) -> list[Comparison]:
    """Each neighbouring pair of the published order, in its direction (the claim: better)."""
    cells = [(m, b) for m, b, _, _ in PUBLISHED]
    return [
        compare(df, _rows(df, a), _rows(df, b), col, f"{_label(a)} - {_label(b)}", "better")
        for a, b in zip(cells, cells[1:], strict=False)
        for col in (ACC, NLL)
    ]


def verdicts(root: Path = FINDINGS) -> str:
    df = results(STUDY, root)
    families, selected = [], []
    for budget, what in BUDGETS.items():
        best, tests = _budget_tests(df, budget)
        selected.append(f"at {what}, {_label(best)}")
        families.append(family(f"At {what}: the best on validation against the others", tests))
    published = ", ".join(f"{m} {acc} % / {nll}" for m, _, acc, nll in PUBLISHED)
    head = (
        f"Selected on validation accuracy: {'; '.join(selected)}.\n\n"
        f"Published (uncertainty-baselines, CIFAR-10, WRN-28-10, one run each; test accuracy / "
        f"NLL): {published}.\n"
    )
    return (
        head
        + "\n"
        + block(
            *families,
            family(
                "The published order: deep > MIMO > BatchEnsemble > single", _published_tests(df)
            ),
        )
    )


# The blocks of docs/findings.md made from this study.
BLOCKS = {"methods_table": cells_table, "methods_verdicts": verdicts}
