"""The ensemble size x learning rate study (findings/ensemble_size/): claim 3, gains from
ensemble size flatten, and smaller learning rates help."""

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
    comparison_line,
    fmt_stat,
    stat_of,
    table,
)

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


def _size_lines(df: pd.DataFrame, lr: float, sizes: list[float]) -> list[str]:
    """At one lr: the first step of size, the last step, and the largest against the smallest."""
    m = METRICS[ACC]
    s = {k: stat_of(df, rows_where(df, ensemble_size=k, lr=lr), ACC) for k in sizes}
    first, last = sizes[:2], sizes[-2:]
    return [
        comparison_line(
            f"lr {lr:g}: {first[1]:g} - {first[0]:g} members", s[first[1]], s[first[0]], m
        ),
        # Flattening: the last step's gain is what the claim says is small; 'better' here
        # would mean it still grows.
        comparison_line(f"lr {lr:g}: {last[1]:g} - {last[0]:g} members", s[last[1]], s[last[0]], m),
        comparison_line(
            f"lr {lr:g}: {sizes[-1]:g} - {sizes[0]:g} members", s[sizes[-1]], s[sizes[0]], m
        ),
    ]


def _lr_lines(df: pd.DataFrame, lrs: list[float]) -> list[str]:
    """All sizes pooled: each smaller lr against the largest, the two smaller ones against each
    other (the claim: close), and NLL and ECE of the next-largest lr against the largest."""
    m = METRICS[ACC]
    pooled = {lr: stat_of(df, rows_where(df, lr=lr), ACC) for lr in lrs}
    big = max(lrs)
    lines = [
        comparison_line(f"lr {lr:g} - lr {big:g} (all sizes pooled)", pooled[lr], pooled[big], m)
        for lr in lrs
        if lr != big
    ]
    small = sorted(lr for lr in lrs if lr != big)
    if len(small) == 2:
        lines.append(
            comparison_line(
                f"lr {small[1]:g} - lr {small[0]:g} (all sizes pooled; the claim: close)",
                pooled[small[1]],
                pooled[small[0]],
                m,
                None,
                (f"{small[1]:g}", f"{small[0]:g}"),
            )
        )
    for c in (NLL, ECE):
        lines.append(
            comparison_line(
                f"lr {small[-1]:g} - lr {big:g} (all sizes pooled)",
                stat_of(df, rows_where(df, lr=small[-1]), c),
                stat_of(df, rows_where(df, lr=big), c),
                METRICS[c],
            )
        )
    return lines


def verdicts(root: Path = FINDINGS) -> str:
    df = results(STUDY, root)
    lrs, sizes = values(df, "lr"), values(df, "ensemble_size")
    lines = [line for lr in lrs for line in _size_lines(df, lr, sizes)]
    return "\n".join(lines + _lr_lines(df, lrs)) + "\n"


# The blocks of docs/findings.md made from this study.
BLOCKS = {"claim3_table": size_lr_table, "claim3_verdicts": verdicts}
