"""The alpha x gamma study (findings/alpha_gamma/): claim 2, the best accuracy has alpha or
gamma (the fast weights' inits) in 0.2-0.8."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.findings.data import FINDINGS, best_on_validation, results, rows_where, values
from analysis.findings.statistics import (
    ACC,
    DISAGREE,
    ECE,
    METRICS,
    NLL,
    fmt_stat,
    stat_of,
    table,
)
from analysis.findings.verdicts import SEED, Comparison, block, compare, family

STUDY = "alpha_gamma"
PICTURE_PAGE = "alpha_gamma_final_test_acc"  # the report page of docs/findings/alpha_gamma.png

MIDDLE = (0.2, 0.8)  # the claim's range of alpha or gamma
# Fast-weight inits with which every member starts with the same factor: 0 (ones) and 1
# (random signs with P(+1) = 1); core.layers' init.
IDENTICAL = (0.0, 1.0)


def grid(root: Path = FINDINGS) -> str:
    """Test accuracy of each (alpha, gamma) cell."""
    df = results(STUDY, root)
    gammas = values(df, "gamma")
    m = METRICS[ACC]
    lines = [
        "| alpha (rows), gamma (columns) | " + " | ".join(f"{g:g}" for g in gammas) + " |",
        "|" + " --- |" * (len(gammas) + 1),
    ]
    for a in values(df, "alpha"):
        cells = [fmt_stat(stat_of(df, rows_where(df, alpha=a, gamma=g), ACC), m) for g in gammas]
        lines.append(f"| {a:g} | " + " | ".join(cells) + " |")
    n = sorted(
        {
            stat_of(df, rows_where(df, alpha=a, gamma=g), ACC).n
            for a in values(df, "alpha")
            for g in gammas
        }
    )
    lines.append("")
    lines.append(f"Test accuracy (%), mean ± sd over {'/'.join(map(str, n))} seeds per cell.")
    return "\n".join(lines) + "\n"


def margins(root: Path = FINDINGS) -> str:
    """Each value of alpha, and of gamma, over the other's values."""
    df = results(STUDY, root)
    rows = [(f"alpha = {a:g}", rows_where(df, alpha=a)) for a in values(df, "alpha")]
    rows += [(f"gamma = {g:g}", rows_where(df, gamma=g)) for g in values(df, "gamma")]
    return table(rows, df, (ACC, NLL, ECE, DISAGREE), "cells with")


def _best_cell(df: pd.DataFrame, mask: pd.Series) -> tuple[float, float]:
    """The (alpha, gamma) of the highest mean validation accuracy among `mask`'s cells."""
    a, g = best_on_validation(df, ["alpha", "gamma"], mask)
    return float(a), float(g)


def _best_value(df: pd.DataFrame, col: str, inside: bool) -> float:
    """The value of `col` (pooled over the other init) with the highest mean validation
    accuracy, among those inside the claim's range or those outside it."""
    lo, hi = MIDDLE
    in_range = pd.to_numeric(df[col]).between(lo, hi)
    return float(best_on_validation(df, [col], in_range == inside)[0])


def _selected(df: pd.DataFrame) -> str:
    """The best cell by validation accuracy, and where it lies (a selection, not a test)."""
    lo, hi = MIDDLE
    ba, bg = _best_cell(df, pd.Series(True, index=df.index))
    where = "alpha or gamma" if (lo <= ba <= hi or lo <= bg <= hi) else "neither"
    test = fmt_stat(stat_of(df, rows_where(df, alpha=ba, gamma=bg), ACC), METRICS[ACC])
    return (
        f"Selected on validation accuracy: the best cell has alpha = {ba:g}, gamma = {bg:g} "
        f"({where} in {lo:g}-{hi:g}); its test accuracy {test} %."
    )


def _middle_tests(df: pd.DataFrame) -> list[Comparison]:
    """Test accuracy, paired by seed: the best cell (by validation) with alpha or gamma in the
    range against the best cell with neither; then, for alpha and for gamma pooled over the
    other (paired by seed and the other's value), the best value in the range against the best
    value outside it (the claim: the one in the range is better)."""
    lo, hi = MIDDLE
    a, g = pd.to_numeric(df["alpha"]), pd.to_numeric(df["gamma"])
    middle = a.between(lo, hi) | g.between(lo, hi)
    (ia, ig), (oa, og) = _best_cell(df, middle), _best_cell(df, ~middle)
    tests = [
        compare(
            df,
            rows_where(df, alpha=ia, gamma=ig),
            rows_where(df, alpha=oa, gamma=og),
            ACC,
            f"best cell with alpha or gamma in {lo:g}-{hi:g} ({ia:g}, {ig:g}) - "
            f"best cell with neither ({oa:g}, {og:g})",
        )
    ]
    for col, other in (("alpha", "gamma"), ("gamma", "alpha")):
        vin, vout = _best_value(df, col, True), _best_value(df, col, False)
        tests.append(
            compare(
                df,
                rows_where(df, **{col: vin}),
                rows_where(df, **{col: vout}),
                ACC,
                f"{col} = {vin:g} - {col} = {vout:g} (the best in and outside {lo:g}-{hi:g}, "
                f"all {other} values)",
                match=(SEED, other),
            )
        )
    return tests


def _alike_tests(df: pd.DataFrame) -> list[Comparison]:
    """The cells whose fast weights start alike against the others, by Welch's t (4 cells
    against 21: the design does not pair them): disagreement (the claim: lower) and accuracy
    (no direction claimed)."""
    a, g = pd.to_numeric(df["alpha"]), pd.to_numeric(df["gamma"])
    same = a.isin(IDENTICAL) & g.isin(IDENTICAL)
    what = "cells whose fast weights start alike (alpha and gamma in {0, 1}) - the others"
    return [
        compare(df, same, ~same, DISAGREE, what + " (the claim: they disagree less)", "worse"),
        compare(df, same, ~same, ACC, "the same two groups", None, ("alike", "others")),
    ]


def verdicts(root: Path = FINDINGS) -> str:
    df = results(STUDY, root)
    return (
        _selected(df)
        + "\n\n"
        + block(
            family("The best accuracy has alpha or gamma in 0.2-0.8", _middle_tests(df)),
            family("Fast weights that start alike", _alike_tests(df)),
        )
    )


# The blocks of docs/findings.md made from this study.
BLOCKS = {"claim2_grid": grid, "claim2_margins": margins, "claim2_verdicts": verdicts}
