"""The ensemble size x learning rate study (findings/ensemble_size/): claim 3, gains from
ensemble size flatten, and smaller learning rates help."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd

from analysis.findings.data import FINDINGS, results, rows_where, values
from analysis.findings.statistics import (
    ACC,
    DISAGREE,
    ECE,
    EQUIVALENT,
    METRICS,
    NLL,
    fmt_stat,
    stat_of,
    table,
)
from analysis.findings.verdicts import SEED, Comparison, block, compare, family

STUDY = "ensemble_size"
PICTURE_PAGE = "ensemble_size_lr"  # the report page docs/findings/ensemble_size.png shows


def size_lr_table(root: Path = FINDINGS) -> str:
    """Test accuracy of each (members, lr) cell, then each lr over all sizes."""
    df = results(STUDY, root)
    lrs, sizes = values(df, "lr"), values(df, "ensemble_size")
    m = METRICS[ACC]
    lines = [
        "| members | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
        "|" + " --- |" * (len(lrs) + 1),
    ]
    for k in sizes:
        cells = [
            fmt_stat(stat_of(df, rows_where(df, ensemble_size=k, lr=lr), ACC), m) for lr in lrs
        ]
        lines.append(f"| {k:g} | " + " | ".join(cells) + " |")
    n = sorted(
        {stat_of(df, rows_where(df, ensemble_size=k, lr=lr), ACC).n for k in sizes for lr in lrs}
    )
    out = (
        "\n".join(lines)
        + f"\n\nTest accuracy (%), mean ± sd over {'/'.join(map(str, n))} seeds per cell.\n\n"
    )
    rows = [(f"lr {lr:g}, all sizes", rows_where(df, lr=lr)) for lr in lrs]
    return out + table(rows, df, (ACC, NLL, ECE, DISAGREE), "pooled")


def _size_tests(df: pd.DataFrame, lr: float, sizes: list[float]) -> list[Comparison]:
    """At one lr, paired by seed: each step to the next size and the largest against the
    smallest (the claim: more members are better), and the last step within the accuracy
    margin (the claim: the gains flatten, an equivalence)."""
    cell = {k: rows_where(df, ensemble_size=k, lr=lr) for k in sizes}
    steps = list(itertools.pairwise(sizes))
    tests = [
        compare(df, cell[big], cell[small], ACC, f"lr {lr:g}: {big:g} - {small:g} members")
        for small, big in [*steps, (sizes[0], sizes[-1])]
    ]
    small, big = steps[-1]
    tests.append(
        compare(
            df,
            cell[big],
            cell[small],
            ACC,
            f"lr {lr:g}: {big:g} - {small:g} members (the claim: flattens)",
            EQUIVALENT,
        )
    )
    return tests


def _lr_tests(df: pd.DataFrame, lrs: list[float]) -> list[Comparison]:
    """All sizes pooled, paired by seed and size: each smaller lr against the largest, the two
    smaller ones against each other (no direction) and within the margin (the claim: close),
    and NLL and ECE of the next-largest lr against the largest."""
    at = {lr: rows_where(df, lr=lr) for lr in lrs}
    by = (SEED, "ensemble_size")
    big = max(lrs)
    tests = [
        compare(df, at[lr], at[big], ACC, f"lr {lr:g} - lr {big:g} (all sizes)", match=by)
        for lr in lrs
        if lr != big
    ]
    small = sorted(lr for lr in lrs if lr != big)
    if len(small) == 2:
        what = f"lr {small[1]:g} - lr {small[0]:g} (all sizes"
        names = (f"{small[1]:g}", f"{small[0]:g}")
        tests += [
            compare(df, at[small[1]], at[small[0]], ACC, what + ")", None, names, by),
            compare(
                df,
                at[small[1]],
                at[small[0]],
                ACC,
                what + "; the claim: close)",
                EQUIVALENT,
                match=by,
            ),
        ]
    tests += [
        compare(
            df, at[small[-1]], at[big], c, f"lr {small[-1]:g} - lr {big:g} (all sizes)", match=by
        )
        for c in (NLL, ECE)
    ]
    return tests


def verdicts(root: Path = FINDINGS) -> str:
    df = results(STUDY, root)
    lrs, sizes = values(df, "lr"), values(df, "ensemble_size")
    return block(
        family(
            "Ensemble size, at each learning rate",
            [t for lr in lrs for t in _size_tests(df, lr, sizes)],
        ),
        family("Learning rate, all sizes pooled", _lr_tests(df, lrs)),
    )


# The blocks of docs/findings.md made from this study.
BLOCKS = {"claim3_table": size_lr_table, "claim3_verdicts": verdicts}
