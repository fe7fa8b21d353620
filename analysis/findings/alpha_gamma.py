"""The alpha x gamma study (findings/alpha_gamma/): claim 2, the best accuracy has alpha or
gamma (the fast weights' inits) in 0.2-0.8."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.findings.data import FINDINGS, results, rows_where, values
from analysis.findings.statistics import (
    ACC,
    DISAGREE,
    ECE,
    METRICS,
    NLL,
    VAL_ACC,
    comparison_line,
    fmt_stat,
    stat_of,
    table,
)
from analysis.tidy import is_usable

STUDY = "alpha_gamma"
PICTURE_PAGE = "alpha_gamma_final_test_acc"  # the report page of docs/findings/alpha_gamma.png

MIDDLE = (0.2, 0.8)  # the claim's range of alpha or gamma
# Fast-weight inits with which every member starts with the same factor: 0 (ones) and 1
# (random signs with P(+1) = 1); core.layers' init.
IDENTICAL = (0.0, 1.0)


def _cell_means(df: pd.DataFrame, column: str) -> pd.DataFrame:
    ok = df[is_usable(df, column)]
    return ok.groupby(["alpha", "gamma"])[column].mean().reset_index()


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
    cells = _cell_means(df[mask], VAL_ACC)
    best = cells.loc[cells[VAL_ACC].idxmax()]
    return float(best["alpha"]), float(best["gamma"])


def _middle_lines(df: pd.DataFrame) -> list[str]:
    """The best cell, and the best cell in the claim's middle range against the best outside."""
    lo, hi = MIDDLE
    a, g = pd.to_numeric(df["alpha"]), pd.to_numeric(df["gamma"])
    middle = a.between(lo, hi) | g.between(lo, hi)
    ba, bg = _best_cell(df, pd.Series(True, index=df.index))
    ia, ig = _best_cell(df, middle)
    oa, og = _best_cell(df, ~middle)
    m = METRICS[ACC]
    inside, outside = (
        stat_of(df, rows_where(df, alpha=ia, gamma=ig), ACC),
        stat_of(df, rows_where(df, alpha=oa, gamma=og), ACC),
    )
    where = "alpha or gamma" if (lo <= ba <= hi or lo <= bg <= hi) else "neither"
    return [
        f"- best cell by validation accuracy: alpha = {ba:g}, gamma = {bg:g} "
        f"({where} in {lo:g}-{hi:g}); "
        f"its test accuracy {fmt_stat(stat_of(df, rows_where(df, alpha=ba, gamma=bg), ACC), m)} %",
        comparison_line(
            f"best cell with alpha or gamma in {lo:g}-{hi:g} ({ia:g}, {ig:g}) - "
            f"best cell with neither ({oa:g}, {og:g})",
            inside,
            outside,
            m,
        ),
    ]


def _spread_lines(df: pd.DataFrame) -> list[str]:
    """For alpha, then gamma: its best value against its worst (over the other's values)."""
    lines = []
    for col in ("alpha", "gamma"):
        means = [stat_of(df, rows_where(df, **{col: v}), ACC) for v in values(df, col)]
        top, bottom = max(means, key=lambda s: s.mean), min(means, key=lambda s: s.mean)
        lines.append(
            comparison_line(
                f"{col}: best - worst value (over the other)", top, bottom, METRICS[ACC], "better"
            )
        )
    return lines


def _alike_lines(df: pd.DataFrame) -> list[str]:
    """The cells whose members start alike against the others: disagreement, accuracy."""
    a, g = pd.to_numeric(df["alpha"]), pd.to_numeric(df["gamma"])
    same = a.isin(IDENTICAL) & g.isin(IDENTICAL)
    groups = (
        ("cells whose members start alike (alpha and gamma in {0, 1}) - the others", DISAGREE),
        ("the same two groups", ACC),
    )
    return [
        comparison_line(what, stat_of(df, same, c), stat_of(df, ~same, c), METRICS[c], "worse")
        for what, c in groups
    ]


def verdicts(root: Path = FINDINGS) -> str:
    df = results(STUDY, root)
    return "\n".join(_middle_lines(df) + _spread_lines(df) + _alike_lines(df)) + "\n"


# The blocks of docs/findings.md made from this study.
BLOCKS = {"claim2_grid": grid, "claim2_margins": margins, "claim2_verdicts": verdicts}
