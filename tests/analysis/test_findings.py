"""docs/findings.md against the committed findings/<study>/ data, and the verdict rule."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import pytest
from PIL import Image

from analysis import findings as F
from analysis.report import build_report
from core import columns as C

REPO = Path(__file__).resolve().parents[2]
DOC_TEXT = F.DOC.read_text(encoding="utf-8")
HAVE = [s for s in F.STUDIES if (F.FINDINGS / s / C.RESULTS_FILE).is_file()]


def test_each_committed_study_has_its_three_files():
    assert HAVE, "no findings/<study>/ committed"
    for study in HAVE:
        for name in (C.RESULTS_FILE, C.HISTORY_FILE, C.STUDY_FILE):
            assert (F.FINDINGS / study / name).is_file(), f"findings/{study}/{name}"
        info = json.loads((F.FINDINGS / study / C.STUDY_FILE).read_text())
        assert info["study"] == study and info["preset"] == "cpu"
        assert info["state"] == "finished" and info["selection_metric"] == C.VAL_ACC


def test_every_block_of_the_document_is_made_from_the_data():
    """Each generated block (every number of the document) equals what analysis.findings
    computes from the committed parquet files (or, for a study not yet committed, says so),
    and the document has every block."""
    doc = F.blocks_of(DOC_TEXT)
    assert set(doc) == set(F.BLOCKS)
    for name in F.BLOCKS:
        stale = f"block {name!r} is stale: python -m analysis.findings"
        assert doc[name] == F.block(name), stale
        assert ("Not yet run" in doc[name]) == (F.STUDY_OF[name.split("_")[0]] not in HAVE)


def test_no_measured_number_outside_the_generated_blocks():
    """Prose carries no measured number: outside the blocks there is no accuracy, difference
    or metric value with decimals (config values such as lr 0.002, the sweep's 0.2-0.8 or the
    10% validation split are settings, not measurements)."""
    prose = F.BLOCK.sub("", DOC_TEXT)
    stray = re.findall(r"\d+\.\d+\s*(?:%|pp\b)|[±]\s*\d", prose)
    assert not stray, f"measured numbers outside generated blocks: {stray}"


def test_the_check_command_sees_a_stale_block(tmp_path, monkeypatch, capsys):
    name = next(iter(F.BLOCKS))
    stale = DOC_TEXT.replace(F.blocks_of(DOC_TEXT)[name], "| stale |\n", 1)
    doc = tmp_path / "findings.md"
    doc.write_text(stale, encoding="utf-8")
    monkeypatch.setattr(F, "DOC", doc)
    assert F.main(["--check"]) == 1
    assert f"block {name!r} differs" in capsys.readouterr().out
    assert F.main([]) == 0
    assert F.main(["--check"]) == 0
    assert doc.read_text(encoding="utf-8") == DOC_TEXT


@pytest.mark.parametrize("study", HAVE)
def test_the_report_rebuilds_from_each_findings_folder(study, tmp_path):
    index = build_report(F.FINDINGS / study, tmp_path / "report")
    assert index.is_file()
    assert (index.parent / f"{F.PICTURE_PAGES[study]}.html").is_file()
    # recorded before provenance was: the overview says so rather than failing
    assert "<tr><th>code version</th><td>not recorded</td></tr>" in index.read_text()


@pytest.mark.parametrize("study", HAVE)
def test_each_study_has_its_picture(study):
    png = F.PICTURES / f"{study}.png"
    assert f"findings/{study}.png" in DOC_TEXT
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] >= 800 and im.size[1] >= 500
        # drawn, not blank: a plot has many distinct colours
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20) or ()) > 50


def test_stat_and_the_two_standard_error_rule():
    a, b = F.Stat.of([0.50, 0.52, 0.54]), F.Stat.of([0.40, 0.41, 0.42])
    assert (a.mean, a.n) == (pytest.approx(0.52), 3) and a.sd == pytest.approx(0.02)
    diff, se = F.compare(a, b)
    assert diff == pytest.approx(0.11)
    assert se == pytest.approx(math.sqrt(0.02**2 / 3 + 0.01**2 / 3))
    assert F.verdict(diff, se) == F.CONFIRMED
    assert F.verdict(-diff, se) == F.REFUTED
    assert F.verdict(diff, diff / 1.9) == F.NOISE  # |diff| <= 2 se
    assert F.verdict(diff, math.nan) == F.NOISE  # one seed: untested
    one = F.Stat.of([0.5])
    assert math.isnan(one.sd) and math.isnan(F.compare(one, b)[1])


def test_a_comparison_line_says_the_direction_of_the_metric():
    acc, nll = F.METRICS[F.ACC], F.METRICS[F.NLL]
    hi, lo = F.Stat.of([0.6, 0.61, 0.62]), F.Stat.of([0.5, 0.51, 0.52])
    assert F.comparison_line("x", hi, lo, acc).endswith(": confirmed")
    assert "+10.0 pp" in F.comparison_line("x", hi, lo, acc)
    # Lower NLL is better: a higher NLL refutes "a is better".
    assert F.comparison_line("x", hi, lo, nll).endswith(": refuted")
    assert F.comparison_line("x", hi, lo, nll, "worse").endswith(": confirmed")
    assert F.comparison_line("x", hi, lo, acc, None, ("be", "deep")).endswith(": be better")


def test_the_asha_comparison_in_the_benchmarks_readme_matches_the_committed_runs():
    """benchmarks/README.md's ASHA table (issue 10, target 6) against benchmarks/asha.py on the
    committed full grid and ASHA run: every cell but the wall time (which needs the trial
    folders, not committed)."""
    spec = importlib.util.spec_from_file_location("asha", REPO / "benchmarks" / "asha.py")
    asha = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(asha)
    readme = (REPO / "benchmarks" / "README.md").read_text(encoding="utf-8")
    for name, folder in (("full grid", "alpha_gamma"), ("ASHA", "alpha_gamma_asha")):
        cells = asha.row(asha.summary(F.FINDINGS / folder))
        line = next(x for x in readme.splitlines() if x.startswith(f"| {name} | 75 "))
        printed = [c.strip() for c in line.strip("|").split("|")][1:]
        assert printed[:3] == cells[:3] and printed[4:] == cells[4:], name
