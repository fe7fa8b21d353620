"""The table of verdicts that change with scale (analysis.findings.changes), on the committed
CPU-scale studies against a copy cut to the learn scale's grids."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from analysis.findings import alpha_gamma, changes, ensemble_size, sharing
from analysis.findings.data import FINDINGS
from analysis.findings.statistics import NOISE
from core import columns as C

TEXT = """Selected on validation accuracy: the best cell has alpha = 1, gamma = 1.

*The best accuracy has alpha or gamma in 0.2-0.8* (Holm over 2 tests, family-wise alpha 0.05):
- best cell with alpha or gamma in 0.2-0.8 (0.5, 0.5) - best cell with neither (1, 1), test acc (%): -8.7 pp (95% CI -12.0 to -5.4; n = 3 pairs; p_Holm = 0.012): refuted
- alpha = 0.5 - alpha = 1 (the best in and outside 0.2-0.8, all gamma values), NLL: - (95% CI - to -; n = 1 pairs; p_Holm -): not separable from seed noise

*Deep sharing costs little* (Holm over 2 tests, family-wise alpha 0.05):
- both: deep / deep - none / none, test acc (%): +0.2 pp (90% CI -0.5 to +0.9; margin ±1.0 pp; n = 3 pairs; p_Holm TOST = 0.040): equivalent
- both: deep / deep - none / none, test acc (%): +0.2 pp (95% CI -0.9 to +1.3; n = 3 pairs; p_Holm = 0.700): not separable from seed noise
- lr 0.002: 8 - 6 members (the claim: flattens), test acc (%): -2.5 pp (90% CI -6.5 to +1.6; margin ±1.0 pp; n = 3 pairs; p_Holm TOST = 1.000): not shown equivalent

*ECE and OOD AUROC, every pair of the 9 regimes* (Holm over 36 tests, family-wise alpha 0.05):
- ECE: 3 of 36 pairs separable; the closest, none / early - early / early, ECE: +0.024 (95% CI -0.1 to +0.2; n = 3 pairs; p_Holm = 1.000): not separable from seed noise
"""  # noqa: E501


def test_lines_are_read_under_their_family_with_selected_values_masked():
    got = changes.parse(TEXT)
    assert len(got) == sum(line.startswith("- ") for line in TEXT.splitlines()) == 6
    ag, eq = "The best accuracy has alpha or gamma in 0.2-0.8", "Deep sharing costs little"
    assert [(v.family, v.test, v.diff, v.verdict) for v in got] == [
        (ag, "difference", "-8.7 pp", "refuted"),
        (ag, "difference", "-", changes.UNTESTABLE),  # no difference: not a verdict
        (eq, "equivalence", "+0.2 pp", "equivalent"),
        (eq, "difference", "+0.2 pp", NOISE),
        (eq, "equivalence", "-2.5 pp", "not shown equivalent"),
        ("ECE and OOD AUROC, every pair of the 9 regimes", "difference", "+0.024", NOISE),
    ]
    assert [v.what for v in got] == [
        "best cell with alpha or gamma in 0.2-0.8 (·, ·) - best cell with neither (·, ·), "
        "test acc (%)",
        "alpha = · - alpha = · (the best in and outside 0.2-0.8, all gamma values), NLL",
        "both: deep / deep - none / none, test acc (%)",
        "both: deep / deep - none / none, test acc (%)",
        "lr 0.002: the largest step (the claim: flattens), test acc (%)",
        "ECE: · of 36 pairs separable, ECE",
    ]
    # the same comparison as an equivalence and as a difference: two keys
    assert len({v.key for v in got}) == len(got)


def _cut(root: Path, study: str, keep) -> None:
    """findings/<study>/ with only the rows `keep` selects (and their history)."""
    (root / study).mkdir(parents=True)
    res = pd.read_parquet(FINDINGS / study / C.RESULTS_FILE)
    hist = pd.read_parquet(FINDINGS / study / C.HISTORY_FILE)
    res = res[keep(res)]
    res.to_parquet(root / study / C.RESULTS_FILE)
    hist[hist[C.TRIAL_ID].isin(res[C.TRIAL_ID])].to_parquet(root / study / C.HISTORY_FILE)
    shutil.copy(FINDINGS / study / C.STUDY_FILE, root / study / C.STUDY_FILE)


def test_a_verdict_tested_at_both_scales_is_one_row(tmp_path):
    """The CPU-scale alpha x gamma, ensemble-size and sharing studies against themselves cut to
    the learn grids (3 x 3 inits; sizes 2, 4, 8; sharing whole): each comparison made at both
    is one row with both verdicts, marked where they differ; those of one scale only (sizes
    6 - 4 and 8 - 6 at the CPU scale, 8 - 4 in the cut) are counted, not shown; the flattening
    step is the largest at both; a study not committed at both is left out."""
    learn = [-0.5, 0.5, 1.0]
    _cut(tmp_path, "alpha_gamma", lambda d: d["alpha"].isin(learn) & d["gamma"].isin(learn))
    _cut(tmp_path, "ensemble_size", lambda d: d["ensemble_size"].isin([2, 4, 8]))
    _cut(tmp_path, "sharing", lambda d: d["seed"].notna())  # the same grid at both
    modules = (alpha_gamma, ensemble_size, sharing)
    # each verdict block made once (the table and the expectations below read the same text)
    texts = {(m.STUDY, r): m.verdicts(r) for m in modules for r in (FINDINGS, tmp_path)}

    def made(study):
        return lambda root: texts[(study, root)]

    studies = [(m.STUDY, [made(m.STUDY)]) for m in modules] + [("optimizers", [])]
    out = changes.table(studies, [("CPU", FINDINGS), ("cut", tmp_path)])
    rows = [r for r in out.splitlines() if r.startswith("| ") and "---" not in r][1:]
    cpu = {v.key: v for m in modules for v in changes.parse(texts[(m.STUDY, FINDINGS)])}
    cut = {v.key: v for m in modules for v in changes.parse(texts[(m.STUDY, tmp_path)])}
    # every verdict line of the sharing study is a row (its images/s lines are no verdicts): its
    # equivalence and difference tests of the same comparison are two
    text = texts[("sharing", FINDINGS)].splitlines()
    lines = sum(x.startswith("- ") and ("(95% CI" in x or "(90% CI" in x) for x in text)
    assert sum(r.startswith("| sharing |") for r in rows) == lines
    assert {k[2] for k in cut} == {"equivalence", "difference"}
    both = [k for k in cut if k in cpu]
    assert len(rows) == len(both) > 0
    assert {r.split(" | ")[0] for r in rows} == {"| alpha_gamma", "| ensemble_size", "| sharing"}
    differ = [k for k in both if cpu[k].verdict != cut[k].verdict]
    assert sum(r.endswith("| **yes** |") for r in rows) == len(differ)
    for k in both:
        row = f"| {k[0]} | {k[1]} | {k[2]} | {cpu[k].verdict} ({cpu[k].diff}) | {cut[k].verdict} "
        assert any(row in r for r in rows), row
    flattens = [k for k in both if "the largest step (the claim: flattens)" in k[1]]
    assert len(flattens) == 3  # one per learning rate
    only = len(cpu.keys() ^ cut.keys())
    assert any("4 - 2 members" in k[1] for k in both)
    assert any("8 - 4 members" in k[1] for k in cut.keys() - cpu.keys())
    assert out.splitlines()[-1] == (
        f"{len(differ)} of {len(both)} verdicts tested at both scales change; 0 comparison(s) "
        f"untestable at one scale (too few usable trials) and {only} tested at one scale only "
        "(a cell the other's grid lacks) are left out of that count."
    )
