"""The verdict lines of the findings: a comparison of two groups of a study's trials, tested
paired by seed where the design pairs them and by Welch's t where it does not, and a family of
comparisons, Holm-corrected together (the tests are `inference`'s).

A line reads

    - what, metric: +3.1 pp (95% CI -0.5 to +6.7; n = 3 pairs; p_Holm = 0.041): confirmed

and, for an equivalence claim (TOST with the metric's margin, its 90% interval):

    - what, metric: -0.2 pp (90% CI -1.9 to +1.5; margin ±1.0 pp; n = 3 pairs;
      p_Holm TOST = 0.410): not shown equivalent
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.findings.inference import ALPHA, TTest, holm, paired, welch
from analysis.findings.statistics import (
    CONFIRMED,
    EQUIVALENT,
    METRICS,
    NOISE,
    NOT_EQUIVALENT,
    REFUTED,
    Metric,
    fmt,
)
from analysis.tidy import is_usable

SEED = "seed"
# What a comparison claims of a against b: 'better' or 'worse' (by the metric's direction),
# None (no direction: the verdict names the better), or EQUIVALENT (|difference| < margin).
CLAIMS = ("better", "worse", None, EQUIVALENT)


@dataclass(frozen=True)
class Comparison:
    """One tested comparison, a - b, and what its claim says of it."""

    what: str
    metric: Metric
    test: TTest
    claim: str | None = "better"
    names: tuple[str, str] = ("a", "b")

    @property
    def p(self) -> float:
        """Its unadjusted p-value: the TOST's for an equivalence claim, else the two-sided t's."""
        return self.test.tost(self.metric.margin) if self.claim == EQUIVALENT else self.test.p


def design_test(
    df: pd.DataFrame, a: pd.Series, b: pd.Series, column: str, match: Sequence[str] = (SEED,)
) -> TTest:
    """The test of rows `a` against rows `b` on `column`: paired when the design pairs them,
    that is when every trial of each group has one trial of the other with the same values of
    `match` (the seed and the settings pooled over; such trials share their batch order and
    augmentation); Welch's t otherwise. Pairs with an unusable trial are left out."""
    a, b = df[np.asarray(a)], df[np.asarray(b)]
    keys = [k for k in match if k in df]
    if keys and _matched(a, b, keys):
        ok_a, ok_b = a[is_usable(a, column)], b[is_usable(b, column)]
        both = ok_a[[*keys, column]].merge(ok_b[[*keys, column]], on=keys, suffixes=("_a", "_b"))
        return paired(both[f"{column}_a"].to_numpy(float), both[f"{column}_b"].to_numpy(float))
    return welch(
        a.loc[is_usable(a, column), column].to_numpy(float),
        b.loc[is_usable(b, column), column].to_numpy(float),
    )


def _matched(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> bool:
    if a.empty or a.duplicated(keys).any() or b.duplicated(keys).any():
        return False
    return _keys(a, keys) == _keys(b, keys)


def _keys(g: pd.DataFrame, keys: list[str]) -> set[tuple]:
    return set(g[keys].astype(str).itertuples(index=False, name=None))


def compare(
    df: pd.DataFrame,
    a: pd.Series,
    b: pd.Series,
    column: str,
    what: str,
    claim: str | None = "better",
    names: tuple[str, str] = ("a", "b"),
    match: Sequence[str] = (SEED,),
) -> Comparison:
    """The comparison of rows `a` against rows `b` of a study on `column` (design_test)."""
    if claim not in CLAIMS:
        raise ValueError(f"claim {claim!r}: allowed {CLAIMS}")
    return Comparison(what, METRICS[column], design_test(df, a, b, column, match), claim, names)


def verdict(
    p_adjusted: float,
    diff: float,
    claim: str | None,
    higher_better: bool = True,
    names: tuple[str, str] = ("a", "b"),
) -> str:
    """The verdict of one comparison from its Holm-adjusted p-value at ALPHA: for 'better' /
    'worse', CONFIRMED or REFUTED by the difference's sign; for None, which of `names` is
    better; for EQUIVALENT, EQUIVALENT or NOT_EQUIVALENT; NOISE when not separable."""
    below = math.isfinite(p_adjusted) and p_adjusted < ALPHA
    if claim == EQUIVALENT:
        return EQUIVALENT if below else NOT_EQUIVALENT
    if not below:
        return NOISE
    a_better = (diff > 0) == higher_better
    if claim is None:
        return f"{names[0] if a_better else names[1]} better"
    return CONFIRMED if a_better == (claim == "better") else REFUTED


def fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "-"
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def line(c: Comparison, p_adjusted: float) -> str:
    """The markdown line of a comparison, given its Holm-adjusted p-value."""
    m, t = c.metric, c.test
    unit = " pp" if m.scale == 100 else ""
    equivalence = c.claim == EQUIVALENT
    level = 1 - 2 * ALPHA if equivalence else 1 - ALPHA
    lo, hi = t.ci(level)
    parts = [f"{level:.0%} CI {fmt(lo, m, True)} to {fmt(hi, m, True)}"]
    if equivalence:
        parts.append(f"margin ±{fmt(m.margin, m)}{unit}")
    parts += [t.n_text, f"p_Holm{' TOST' if equivalence else ''} {fmt_p(p_adjusted)}"]
    v = verdict(p_adjusted, t.diff, c.claim, m.higher_better, c.names)
    return f"- {c.what}, {m.header}: {fmt(t.diff, m, True)}{unit} ({'; '.join(parts)}): {v}"


def family(title: str, comparisons: Sequence[Comparison]) -> list[str]:
    """A family's lines: its title, then each comparison with its p-value Holm-adjusted over
    the family."""
    adjusted = holm([c.p for c in comparisons])
    lines = (line(c, p) for c, p in zip(comparisons, adjusted, strict=True))
    return ["", heading(title, len(comparisons)), *lines]


def heading(title: str, k: int) -> str:
    """The first line of a family of k tests."""
    return f"*{title}* (Holm over {k} tests, family-wise alpha {ALPHA:g}):"


def block(*families: list[str]) -> str:
    """A generated block of families' lines (each family begins with a blank line)."""
    lines = [x for f in families for x in f]
    return "\n".join(lines[1:] if lines and lines[0] == "" else lines) + "\n"
