"""The table of verdicts that change with scale (analysis.findings.changes), on the committed
CPU-scale studies against a copy cut to the learn scale's grids."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from analysis.findings import alpha_gamma, changes, ensemble_size
from analysis.findings.data import FINDINGS
from analysis.findings.statistics import NOISE
from core import columns as C

TEXT = """Selected on validation accuracy: the best cell has alpha = 1, gamma = 1.

*The best accuracy has alpha or gamma in 0.2-0.8* (Holm over 2 tests, family-wise alpha 0.05):
- best cell with alpha or gamma in 0.2-0.8 (0.5, 0.5) - best cell with neither (1, 1), test acc (%): -8.7 pp (95% CI -12.0 to -5.4; n = 3 pairs; p_Holm = 0.012): refuted
- alpha = 0.5 - alpha = 1 (the best in and outside 0.2-0.8, all gamma values), NLL: - (95% CI - to -; n = 1 pairs; p_Holm -): not separable from seed noise

*ECE and OOD AUROC, every pair of the 9 regimes* (Holm over 36 tests, family-wise alpha 0.05):
- ECE: 3 of 36 pairs separable; the closest, none / early - early / early, ECE: +0.024 (95% CI -0.1 to +0.2; n = 3 pairs; p_Holm = 1.000): not separable from seed noise
"""  # noqa: E501


def test_lines_are_read_under_their_family_with_selected_values_masked():
    got = changes.parse(TEXT)
    assert [(v.family, v.diff, v.verdict) for v in got] == [
        ("The best accuracy has alpha or gamma in 0.2-0.8", "-8.7 pp", "refuted"),
        ("The best accuracy has alpha or gamma in 0.2-0.8", "-", NOISE),
        ("ECE and OOD AUROC, every pair of the 9 regimes", "+0.024", NOISE),
    ]
    assert [v.what for v in got] == [
        "best cell with alpha or gamma in 0.2-0.8 (·, ·) - best cell with neither (·, ·), "
        "test acc (%)",
        "alpha = · - alpha = · (the best in and outside 0.2-0.8, all gamma values), NLL",
        "ECE: · of 36 pairs separable, ECE",
    ]


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
    """The CPU-scale alpha x gamma and ensemble-size studies against themselves cut to the learn
    grids (3 x 3 inits; sizes 2, 4, 8): each comparison made at both is one row with both
    verdicts, marked where they differ; those of one scale only (sizes 6 - 4, 8 - 6; 8 - 4
    exists only in the cut) are counted, not shown; a study not committed at both is left out."""
    learn = [-0.5, 0.5, 1.0]
    _cut(tmp_path, "alpha_gamma", lambda d: d["alpha"].isin(learn) & d["gamma"].isin(learn))
    _cut(tmp_path, "ensemble_size", lambda d: d["ensemble_size"].isin([2, 4, 8]))
    studies = [(m.STUDY, [m.verdicts]) for m in (alpha_gamma, ensemble_size)] + [("optimizers", [])]
    out = changes.table(
        studies,
        [("CPU", FINDINGS), ("cut", tmp_path)],
        lambda root, study: (root / study / C.RESULTS_FILE).is_file(),
    )
    rows = [r for r in out.splitlines() if r.startswith("| ") and "---" not in r][1:]
    cpu = {
        (v.family, v.what): v
        for m in (alpha_gamma, ensemble_size)
        for v in changes.parse(m.verdicts(FINDINGS))
    }
    cut = {
        (v.family, v.what): v
        for m in (alpha_gamma, ensemble_size)
        for v in changes.parse(m.verdicts(tmp_path))
    }
    both = [k for k in cut if k in cpu]
    assert len(rows) == len(both) > 0
    assert {r.split(" | ")[0] for r in rows} == {"| alpha_gamma", "| ensemble_size"}
    differ = [k for k in both if cpu[k].verdict != cut[k].verdict]
    assert sum(r.endswith("| **yes** |") for r in rows) == len(differ)
    for k in both:
        row = f"| {k[0]} | {k[1]} | {cpu[k].verdict} ({cpu[k].diff}) | {cut[k].verdict} "
        assert any(row in r for r in rows), row
    only = len(cpu.keys() ^ cut.keys())
    assert any("members" in k[1] and "8 - 4" in k[1] for k in cut.keys() - cpu.keys())
    assert out.splitlines()[-1] == (
        f"{len(differ)} of {len(both)} verdicts tested at both scales change; {only} "
        "comparison(s) tested at one scale only (a cell the other's grid lacks) are left out."
    )
