"""The verdict rule of the findings: a group's mean / sd / n, the two-standard-error rule, and
the line that states a comparison."""

from __future__ import annotations

import math

import pytest

from analysis.findings import statistics as S


def test_stat_and_the_two_standard_error_rule():
    a, b = S.Stat.of([0.50, 0.52, 0.54]), S.Stat.of([0.40, 0.41, 0.42])
    assert (a.mean, a.n) == (pytest.approx(0.52), 3) and a.sd == pytest.approx(0.02)
    diff, se = S.compare(a, b)
    assert diff == pytest.approx(0.11)
    assert se == pytest.approx(math.sqrt(0.02**2 / 3 + 0.01**2 / 3))
    assert S.verdict(diff, se) == S.CONFIRMED
    assert S.verdict(-diff, se) == S.REFUTED
    assert S.verdict(diff, diff / 1.9) == S.NOISE  # |diff| <= 2 se
    assert S.verdict(diff, math.nan) == S.NOISE  # one seed: untested
    one = S.Stat.of([0.5])
    assert math.isnan(one.sd) and math.isnan(S.compare(one, b)[1])


def test_a_comparison_line_says_the_direction_of_the_metric():
    acc, nll = S.METRICS[S.ACC], S.METRICS[S.NLL]
    hi, lo = S.Stat.of([0.6, 0.61, 0.62]), S.Stat.of([0.5, 0.51, 0.52])
    assert S.comparison_line("x", hi, lo, acc).endswith(": confirmed")
    assert "+10.0 pp" in S.comparison_line("x", hi, lo, acc)
    # Lower NLL is better: a higher NLL refutes "a is better".
    assert S.comparison_line("x", hi, lo, nll).endswith(": refuted")
    assert S.comparison_line("x", hi, lo, nll, "worse").endswith(": confirmed")
    assert S.comparison_line("x", hi, lo, acc, None, ("be", "deep")).endswith(": be better")
