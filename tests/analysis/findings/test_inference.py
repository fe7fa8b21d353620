"""The tests behind the findings' verdicts: Welch's and the paired t against scipy, Holm's
correction by hand, TOST against its two one-sided tests, and the family-wise error rate of
Holm-corrected families of 3-against-3 comparisons under no difference (simulated)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis.findings import inference as I

A = [0.412, 0.448, 0.431]
B = [0.395, 0.401, 0.440]


def test_welch_matches_scipy():
    t = I.welch(A, B)
    ref = stats.ttest_ind(A, B, equal_var=False)
    assert t.diff == pytest.approx(np.mean(A) - np.mean(B))
    assert t.diff / t.se == pytest.approx(ref.statistic)
    assert t.p == pytest.approx(ref.pvalue)
    assert t.df == pytest.approx(ref.df)
    lo, hi = t.ci(0.95)
    ci = ref.confidence_interval(0.95)
    assert (lo, hi) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert (t.n_a, t.n_b, t.paired, t.n_text) == (3, 3, False, "n = 3 vs 3")


def test_welch_with_unequal_groups_matches_scipy():
    a, b = [1.0, 2.0, 4.0, 8.0, 3.0], [2.0, 2.5, 2.2]
    t, ref = I.welch(a, b), stats.ttest_ind(a, b, equal_var=False)
    assert (t.p, t.df) == (pytest.approx(ref.pvalue), pytest.approx(ref.df))


def test_paired_matches_scipy():
    t = I.paired(A, B)
    ref = stats.ttest_rel(A, B)
    assert t.diff / t.se == pytest.approx(ref.statistic)
    assert t.p == pytest.approx(ref.pvalue)
    assert t.df == 2 and t.paired and t.n_text == "n = 3 pairs"
    ci = ref.confidence_interval(0.95)
    assert t.ci(0.95) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_a_pair_with_a_missing_value_is_left_out():
    t = I.paired([*A, math.nan], [*B, 0.5])
    assert t.n_a == 3 and t.p == pytest.approx(stats.ttest_rel(A, B).pvalue)


def test_too_few_values_give_no_test():
    for t in (I.welch([0.5], B), I.paired([0.5], [0.4])):
        assert math.isnan(t.p) and not t.usable
        assert all(math.isnan(v) for v in t.ci())
        assert math.isnan(t.tost(0.01))


def test_holm_by_hand():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> 0.06)
    assert I.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert I.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = I.holm([math.nan, 0.01, 0.02])  # untestable: not counted in the family
    assert math.isnan(out[0]) and out[1:] == pytest.approx([0.02, 0.02])
    assert I.holm([]) == []


def test_tost_is_the_larger_of_its_two_one_sided_tests():
    d = np.array([0.004, -0.002, 0.006])
    margin = 0.02
    t = I.paired(d, np.zeros(3))
    lower = stats.ttest_1samp(d, -margin, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, margin, alternative="less").pvalue
    assert t.tost(margin) == pytest.approx(max(lower, upper))
    # equivalence at 0.05 exactly when the 90% interval lies inside the margin
    lo, hi = t.ci(0.90)
    assert (t.tost(margin) < 0.05) == (-margin < lo and hi < margin)
    assert t.tost(margin) < 0.05  # mean 0.0027, se 0.0024: well inside +-0.02
    assert t.tost(0.005) > 0.05  # a margin the interval crosses
    # Welch's TOST: the same two one-sided tests on Welch's t
    w = I.welch(A, B)
    t_lo, t_hi = (w.diff + 0.05) / w.se, (w.diff - 0.05) / w.se
    ref = max(stats.t.sf(t_lo, w.df), stats.t.cdf(t_hi, w.df))
    assert w.tost(0.05) == pytest.approx(ref)


@pytest.mark.parametrize("test", [I.welch, I.paired])
def test_a_holm_family_of_3_against_3_holds_its_error_rate(test):
    """Under no difference, the chance that a family of 4 independent comparisons of 3 against
    3 trials rejects anything after Holm's correction is at most ALPHA (2,000 families)."""
    rng = np.random.default_rng(22)
    families, k = 2000, 4
    x = rng.normal(size=(families, k, 2, 3))
    hits = sum(any(p < I.ALPHA for p in I.holm([test(c[0], c[1]).p for c in fam])) for fam in x)
    rate, tolerance = hits / families, 3 * math.sqrt(I.ALPHA * (1 - I.ALPHA) / families)
    assert rate <= I.ALPHA + tolerance
    assert rate > 0.01  # it does reject: the test is not vacuous


def test_the_two_standard_error_rule_it_replaces_is_not_conservative():
    """The old rule, |diff| > 2 Welch se, at 3 against 3 under no difference: about one false
    positive in nine, not at most one in twenty."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 100_000, 3))
    se = np.sqrt(a.var(1, ddof=1) / 3 + b.var(1, ddof=1) / 3)
    rate = np.mean(np.abs(a.mean(1) - b.mean(1)) > 2 * se)
    assert 0.10 < rate < 0.13
