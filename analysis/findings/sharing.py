"""The parameter-sharing study (findings/sharing/): claim 4, deep-layer sharing is cheap, early
sharing harmful."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.findings.data import FINDINGS, first_value, results, rows_where
from analysis.findings.statistics import (
    ACC,
    AUROC,
    CORRUPT_ACC,
    ECE,
    METRICS,
    NLL,
    comparison_line,
    stat_of,
    table,
)
from core import columns as C

STUDY = "sharing"
PICTURE_PAGE = "sharing"  # the report page docs/findings/sharing.png is a screenshot of

SHARING_COLUMNS = (ACC, NLL, ECE, CORRUPT_ACC, AUROC)
# The comparisons of the claim: (what, a, b) as (sharing_network, sharing_ensemble) pairs.
SHARING_PAIRS = (
    ("within the network", ("early", "none"), ("deep", "none")),
    ("within the ensemble", ("none", "early"), ("none", "deep")),
    ("both", ("early", "early"), ("deep", "deep")),
)
NONE = ("none", "none")


def _regime(df: pd.DataFrame, pair: tuple[str, str]) -> pd.Series:
    return rows_where(df, sharing_network=pair[0], sharing_ensemble=pair[1])


def _regimes(df: pd.DataFrame) -> list[tuple[str, str]]:
    order = ("none", "early", "deep", "all")
    pairs = {(n, e) for n, e in zip(df["sharing_network"], df["sharing_ensemble"], strict=True)}
    return sorted(pairs, key=lambda p: (order.index(p[0]), order.index(p[1])))


def regimes_table(root: Path = FINDINGS) -> str:
    """Each (network, ensemble) sharing regime: the metrics, then its parameters and speed."""
    df = results(STUDY, root)
    rows = [(f"{n} / {e}", _regime(df, (n, e))) for n, e in _regimes(df)]
    out = table(rows, df, SHARING_COLUMNS, "network / ensemble")
    lines = [
        "",
        "| network / ensemble | distinct parameters | images/s timed alone |",
        "| --- | --- | --- |",
    ]
    for label, mask in rows:
        p = first_value(df, mask, C.PARAMS)
        ips = first_value(df, mask, C.CALIB_IMAGES_PER_S)
        lines.append(f"| {label} | {p:,.0f} | {ips:,.0f} |")
    return out + "\n".join(lines) + "\n"


def _pair_lines(df: pd.DataFrame, what: str, early: tuple, deep: tuple) -> list[str]:
    """One place of sharing: deep, then early sharing against none; early against deep; and
    the speed of the three."""
    none = _regime(df, NONE)
    lines = [
        comparison_line(
            f"{what}: {pair[0]} / {pair[1]} - none / none",
            stat_of(df, _regime(df, pair), c),
            stat_of(df, none, c),
            METRICS[c],
            None,  # "costs little" has no direction: the line names the better
            (f"{pair[0]} / {pair[1]}", "none / none"),
        )
        for pair in (deep, early)
        for c in (ACC, CORRUPT_ACC, NLL)
    ]
    for c in (ACC, CORRUPT_ACC):
        lines.append(
            comparison_line(
                f"{what}: early - deep sharing",
                stat_of(df, _regime(df, early), c),
                stat_of(df, _regime(df, deep), c),
                METRICS[c],
                "worse",
            )
        )
    t = {p: first_value(df, _regime(df, p), C.CALIB_IMAGES_PER_S) for p in (NONE, early, deep)}
    lines.append(
        f"- {what}: images/s timed alone (one measurement per regime, no seed spread): "
        f"none {t[NONE]:,.0f}, early {t[early]:,.0f}, deep {t[deep]:,.0f}"
    )
    return lines


def verdicts(root: Path = FINDINGS) -> str:
    df = results(STUDY, root)
    lines = [
        line for what, early, deep in SHARING_PAIRS for line in _pair_lines(df, what, early, deep)
    ]
    return "\n".join(lines) + "\n"


# The blocks of docs/findings.md made from this study.
BLOCKS = {"claim4_table": regimes_table, "claim4_verdicts": verdicts}
