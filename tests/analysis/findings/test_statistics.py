"""The findings' numbers and verdict lines: a group's mean / sd / n, the verdict strings, the
choice of a paired or a Welch test by the design, and a family's Holm-adjusted lines."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from analysis.findings import statistics as S
from analysis.findings import verdicts as V


def test_stat_of_a_group():
    a = S.Stat.of([0.50, 0.52, 0.54])
    assert (a.mean, a.n) == (pytest.approx(0.52), 3) and a.sd == pytest.approx(0.02)
    one = S.Stat.of([0.5])
    assert math.isnan(one.sd) and S.Stat.of([]).n == 0


def test_verdict_strings():
    # a directed claim: confirmed or refuted by the sign, when the adjusted p is below alpha
    assert V.verdict(0.01, +0.03, "better") == S.CONFIRMED
    assert V.verdict(0.01, -0.03, "better") == S.REFUTED
    assert V.verdict(0.01, -0.03, "worse") == S.CONFIRMED
    assert V.verdict(0.2, +0.03, "better") == S.NOISE == "not separable from seed noise"
    assert V.verdict(math.nan, +0.03, "better") == S.NOISE  # one seed: untested
    # lower is better (NLL): a higher value refutes "a is better"
    assert V.verdict(0.01, +0.1, "better", higher_better=False) == S.REFUTED
    # no direction claimed: the better of the two is named
    assert V.verdict(0.01, -0.1, None, True, ("batch", "deep")) == "deep better"
    assert V.verdict(0.3, -0.1, None, True, ("batch", "deep")) == S.NOISE
    # an equivalence claim reads the TOST's adjusted p
    assert V.verdict(0.01, +0.002, S.EQUIVALENT) == S.EQUIVALENT == "equivalent"
    assert V.verdict(0.4, +0.002, S.EQUIVALENT) == S.NOT_EQUIVALENT == "not shown equivalent"


def _study() -> pd.DataFrame:
    """Two cells x 3 seeds, paired by seed, and a third group of 4 trials with repeated seeds."""
    acc = [0.41, 0.45, 0.43, 0.39, 0.42, 0.40, 0.30, 0.31, 0.33, 0.32]
    return pd.DataFrame(
        {
            "cell": ["a"] * 3 + ["b"] * 3 + ["c"] * 4,
            "seed": [0, 1, 2, 0, 1, 2, 0, 0, 1, 1],
            "outcome": ["completed"] * 10,
            S.ACC: acc,
        }
    )


def test_the_design_decides_paired_or_welch():
    df = _study()
    a, b, c = (df["cell"].eq(x) for x in "abc")
    t = V.design_test(df, a, b, S.ACC)
    assert t.paired and t.p == pytest.approx(stats.ttest_rel(df[S.ACC][a], df[S.ACC][b]).pvalue)
    # c has two trials per seed: not one-to-one with a, so Welch's t
    w = V.design_test(df, a, c, S.ACC)
    ref = stats.ttest_ind(df[S.ACC][a], df[S.ACC][c], equal_var=False)
    assert not w.paired and w.p == pytest.approx(ref.pvalue)
    # a diverged trial leaves its pair out
    df.loc[1, "outcome"] = "diverged"
    assert V.design_test(df, a, b, S.ACC).n_a == 2


def test_a_family_adjusts_its_p_values_and_prints_each_line():
    df = _study()
    a, b, c = (df["cell"].eq(x) for x in "abc")
    comparisons = [
        V.compare(df, a, b, S.ACC, "a - b"),
        V.compare(df, a, c, S.ACC, "a - c"),
        V.compare(df, a, b, S.ACC, "a - b (close)", S.EQUIVALENT),
    ]
    lines = V.family("A family", comparisons)
    assert lines[:2] == ["", "*A family* (Holm over 3 tests, family-wise alpha 0.05):"]
    adjusted = V.holm([x.p for x in comparisons])
    ab, ac, close = lines[2:]
    assert ab.startswith("- a - b, test acc (%): +2.7 pp (95% CI ")
    assert f"n = 3 pairs; p_Holm = {adjusted[0]:.3f}): " in ab
    assert f"n = 3 vs 4; p_Holm = {adjusted[1]:.3f}): confirmed" in ac and adjusted[1] < 0.05
    assert "(90% CI " in close and "margin ±1.0 pp; n = 3 pairs; p_Holm TOST" in close
    assert close.endswith(": not shown equivalent")
    with pytest.raises(ValueError, match="claim 'more'"):
        V.compare(df, a, b, S.ACC, "x", "more")


def test_a_separable_gain_from_6_to_8_members_is_not_flattening():
    """The latent bug of the 2-se rule's flattening line ('8 - 6 members: confirmed' for a
    separable gain): flattening is now an equivalence, which a large gain fails."""
    from analysis.findings.ensemble_size import _size_tests

    gain = {2: 0.30, 4: 0.35, 6: 0.40, 8: 0.50}  # +10 pp from 6 to 8 members
    rows = [
        {"ensemble_size": k, "lr": 0.01, "seed": s, "outcome": "completed", S.ACC: a + 0.01 * s}
        for k, a in gain.items()
        for s in range(3)
    ]
    df = pd.DataFrame(rows)
    df.loc[df["ensemble_size"].eq(8) & df["seed"].eq(1), S.ACC] += 0.004  # not a constant gain
    tests = _size_tests(df, 0.01, [2, 4, 6, 8])
    lines = V.family("sizes", tests)[2:]
    step, flat = lines[2], lines[-1]
    assert step.startswith("- lr 0.01: 8 - 6 members, test acc (%): +10.1 pp")
    assert step.endswith(": confirmed")  # more members: a separable gain
    assert "(the claim: flattens)" in flat and flat.endswith(": not shown equivalent")
