"""The tests behind the findings' verdicts: Welch's and the paired t test, the two one-sided
tests of equivalence (TOST), and Holm's step-down correction of a family of p-values.

A comparison is of two groups of trials, a and b, on one metric; its difference is
d = mean(a) - mean(b).

- Welch's t (unpaired): se = sqrt(s_a^2 / n_a + s_b^2 / n_b), t = d / se, on the
  Welch-Satterthwaite degrees of freedom
  nu = se^4 / ((s_a^2 / n_a)^2 / (n_a - 1) + (s_b^2 / n_b)^2 / (n_b - 1)).
- Paired t, where each trial of a has one trial of b that shares everything but the compared
  setting (its seed, and the values of the settings pooled over): on the n differences
  d_i = a_i - b_i, se = s_d / sqrt(n), t = mean(d_i) / se on n - 1 degrees of freedom.
- The two-sided p-value is 2 P(T_nu > |t|); the (1 - level) confidence interval of the
  difference is d -/+ t_{nu, 1 - level/2} se.
- TOST with margin m > 0: equivalence (|true difference| < m) is shown when both one-sided
  nulls, difference <= -m and difference >= m, are rejected:
  p = max(P(T_nu > (d + m) / se), P(T_nu < (d - m) / se)), which is p < alpha exactly when the
  (1 - 2 alpha) interval lies inside (-m, m).
- Holm: sort the k p-values ascending, p_(1) <= ... <= p_(k); the adjusted
  p_(i)' = max_{j <= i} min(1, (k - j + 1) p_(j)). Rejecting where p' < alpha keeps the
  probability of any false rejection in the family at most alpha, under any dependence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05  # the family-wise error rate of every family of the findings


@dataclass(frozen=True)
class TTest:
    """One two-sample t test: its difference (a - b), standard error, degrees of freedom,
    group sizes (n_b = 0 for a paired test, n_a its pairs) and two-sided p-value."""

    diff: float
    se: float
    df: float
    n_a: int
    n_b: int
    p: float
    paired: bool

    def ci(self, level: float = 1 - ALPHA) -> tuple[float, float]:
        """The two-sided `level` confidence interval of the difference."""
        if not self.usable:
            return math.nan, math.nan
        half = stats.t.ppf(0.5 + level / 2, self.df) * self.se
        return self.diff - half, self.diff + half

    @property
    def usable(self) -> bool:
        return math.isfinite(self.diff) and math.isfinite(self.se) and self.se > 0

    @property
    def n_text(self) -> str:
        return f"n = {self.n_a} pairs" if self.paired else f"n = {self.n_a} vs {self.n_b}"

    def tost(self, margin: float) -> float:
        """The TOST p-value of |difference| < margin (NaN when untestable)."""
        if not self.usable:
            return math.nan
        lower = stats.t.sf((self.diff + margin) / self.se, self.df)
        upper = stats.t.cdf((self.diff - margin) / self.se, self.df)
        return float(max(lower, upper))


def _clean(values: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v[np.isfinite(v)]


def welch(a: Sequence[float], b: Sequence[float]) -> TTest:
    """Welch's unpaired t test of mean(a) - mean(b) (NaN p with fewer than 2 values a side)."""
    a, b = _clean(a), _clean(b)
    if min(len(a), len(b)) < 2:
        diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
        return TTest(diff, math.nan, math.nan, len(a), len(b), math.nan, False)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else math.nan
    diff = float(a.mean() - b.mean())
    p = float(2 * stats.t.sf(abs(diff) / se, df)) if se > 0 else math.nan
    return TTest(diff, se, df, len(a), len(b), p, False)


def paired(a: Sequence[float], b: Sequence[float]) -> TTest:
    """The paired t test of mean(a_i - b_i); a and b in the same order, pairs with a missing
    value left out."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 2:
        return TTest(float(d.mean()) if n else math.nan, math.nan, math.nan, n, 0, math.nan, True)
    se = float(d.std(ddof=1) / math.sqrt(n))
    diff = float(d.mean())
    p = float(2 * stats.t.sf(abs(diff) / se, n - 1)) if se > 0 else math.nan
    return TTest(diff, se, n - 1, n, 0, p, True)


def holm(p: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values, in the order given; NaN (an untestable comparison) stays NaN
    and does not count towards the family's size."""
    p = [float(x) for x in p]
    tested = sorted((x, i) for i, x in enumerate(p) if math.isfinite(x))
    k = len(tested)
    out = [math.nan] * len(p)
    running = 0.0
    for rank, (x, i) in enumerate(tested):
        running = max(running, min(1.0, (k - rank) * x))
        out[i] = running
    return out
