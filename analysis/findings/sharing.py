"""The parameter-sharing study (findings/sharing/): claim 4, deep-layer sharing is cheap, early
sharing harmful."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd

from analysis.findings.data import FINDINGS, first_value, results, rows_where
from analysis.findings.inference import ALPHA, holm
from analysis.findings.statistics import (
    ACC,
    AUROC,
    CORRUPT_ACC,
    ECE,
    EQUIVALENT,
    METRICS,
    NLL,
    table,
)
from analysis.findings.verdicts import Comparison, block, compare, family, heading, line
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
# The metrics in which "deep sharing is cheap" and "early sharing harmful" are tested.
CHEAP_COLUMNS = (ACC, CORRUPT_ACC, NLL)


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


def _label(pair: tuple[str, str]) -> str:
    return f"{pair[0]} / {pair[1]}"


def _cheap(df: pd.DataFrame, what: str, deep: tuple) -> list[Comparison]:
    """Deep sharing against none, paired by seed: within each metric's margin (the claim: it
    costs little, an equivalence), and the difference itself (no direction claimed)."""
    a, b = _regime(df, deep), _regime(df, NONE)
    what = f"{what}: {_label(deep)} - none / none"
    return [compare(df, a, b, c, what, EQUIVALENT) for c in CHEAP_COLUMNS] + [
        compare(df, a, b, c, what, None, (_label(deep), "none / none")) for c in CHEAP_COLUMNS
    ]


def _harmful(df: pd.DataFrame, what: str, early: tuple, deep: tuple) -> list[Comparison]:
    """Early sharing against none and against deep sharing, paired by seed (the claim: worse)."""
    e = _regime(df, early)
    return [
        compare(df, e, _regime(df, NONE), c, f"{what}: {_label(early)} - none / none", "worse")
        for c in CHEAP_COLUMNS
    ] + [
        compare(df, e, _regime(df, deep), c, f"{what}: early - deep sharing", "worse")
        for c in (ACC, CORRUPT_ACC)
    ]


def _speed_lines(df: pd.DataFrame) -> list[str]:
    """The images/s of each place of sharing (one timing per regime: no test)."""
    lines = ["", "Images/s timed alone (one measurement per regime, no seed spread, no test):"]
    for what, early, deep in SHARING_PAIRS:
        t = {p: first_value(df, _regime(df, p), C.CALIB_IMAGES_PER_S) for p in (NONE, early, deep)}
        lines.append(f"- {what}: none {t[NONE]:,.0f}, early {t[early]:,.0f}, deep {t[deep]:,.0f}")
    return lines


def _all_pairs(df: pd.DataFrame) -> list[str]:
    """ECE and OOD AUROC of every pair of regimes, paired by seed, one family: for each metric
    the number separable and the pair with the smallest adjusted p-value."""
    regimes = _regimes(df)
    tests = [
        compare(
            df,
            _regime(df, p),
            _regime(df, q),
            c,
            f"{_label(p)} - {_label(q)}",
            None,
            (_label(p), _label(q)),
        )
        for c in (ECE, AUROC)
        for p, q in itertools.combinations(regimes, 2)
    ]
    adjusted = holm([t.p for t in tests])
    lines = [
        "",
        heading(f"ECE and OOD AUROC, every pair of the {len(regimes)} regimes", len(tests)),
    ]
    for c in (ECE, AUROC):
        mine = [(t, p) for t, p in zip(tests, adjusted, strict=True) if t.metric.column == c]
        hits = sum(p < ALPHA for _, p in mine)
        t, p = min(mine, key=lambda tp: (tp[1], tp[0].p))
        lines.append(
            f"- {METRICS[c].header}: {hits} of {len(mine)} pairs separable; the closest, "
            + line(t, p)[2:]
        )
    return lines


def verdicts(root: Path = FINDINGS) -> str:
    df = results(STUDY, root)
    cheap = [t for what, _, deep in SHARING_PAIRS for t in _cheap(df, what, deep)]
    harmful = [t for what, early, deep in SHARING_PAIRS for t in _harmful(df, what, early, deep)]
    return block(
        family("Deep sharing costs little", cheap),
        family("Early sharing is harmful", harmful),
        _all_pairs(df),
        _speed_lines(df),
    )


# The blocks of docs/findings.md made from this study.
BLOCKS = {"claim4_table": regimes_table, "claim4_verdicts": verdicts}
