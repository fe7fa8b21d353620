"""docs/findings.md against the committed findings/<study>/ data: its blocks, sections and
pictures."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from analysis.findings import document as D
from analysis.findings.__main__ import main
from analysis.findings.data import FINDINGS
from analysis.report import build_report
from core import columns as C

REPO = Path(__file__).resolve().parents[2]
DOC_TEXT = D.DOC.read_text(encoding="utf-8")
# (scale, study) of every committed study, the CPU scale's in findings/<study>/
HAVE = [(sc, s) for sc in D.SCALES for s in D.STUDIES if D.has_results(sc, s)]


def test_each_committed_study_has_its_three_files():
    assert HAVE, "no findings/<study>/ committed"
    assert D.CPU_SCALE.root == FINDINGS and D.CPU_SCALE.preset == "cpu"
    assert D.LEARN_SCALE.root == FINDINGS / "learn" and D.LEARN_SCALE.preset == "learn"
    for scale, study in HAVE:
        for name in (C.RESULTS_FILE, C.HISTORY_FILE, C.STUDY_FILE):
            assert (scale.root / study / name).is_file(), f"{scale.root}/{study}/{name}"
        info = json.loads((scale.root / study / C.STUDY_FILE).read_text())
        assert info["study"] == study and info["preset"] == scale.preset
        assert info["state"] == "finished" and info["selection_metric"] == C.VAL_ACC


def test_every_block_of_the_document_is_made_from_the_data():
    """Each generated block (every number of the document) equals what analysis.findings
    computes from the committed parquet files (or, for a study not yet committed, says so),
    and the document has every block."""
    doc = D.blocks_of(DOC_TEXT)
    assert set(doc) == set(D.BLOCKS)
    for name in D.BLOCKS:
        stale = f"block {name!r} is stale: python -m analysis.findings"
        assert doc[name] == D.block(name), stale
        made = D.has_results(D.SCALE_OF[name], D.STUDY_OF[name])
        assert ("Not yet run" in doc[name]) == (not made), name


def test_each_scale_has_its_section_after_the_statistical_method():
    """One section per scale, titled by it, holding that scale's blocks, after the paragraph
    that states the method all verdict lines follow; the learn scale first."""
    method = DOC_TEXT.index("\n## Statistical method\n")
    learn, cpu = (DOC_TEXT.index(f"\n## {s.title}\n") for s in (D.LEARN_SCALE, D.CPU_SCALE))
    assert method < learn < cpu
    for scale in D.SCALES:
        start = DOC_TEXT.index(f"\n## {scale.title}\n")
        end = DOC_TEXT.find("\n## ", start + 1)
        assert method < start
        for name in (k for k in D.BLOCKS if D.SCALE_OF[k] == scale):
            assert start < DOC_TEXT.index(f"<!-- findings:{name} -->") < end, name


def test_no_measured_number_outside_the_generated_blocks():
    """Prose carries no measured number: outside the blocks there is no accuracy, difference
    or metric value with decimals (config values such as lr 0.002, the sweep's 0.2-0.8 or the
    10% validation split are settings, not measurements)."""
    prose = D.BLOCK.sub("", DOC_TEXT)
    stray = re.findall(r"\d+\.\d+\s*(?:%|pp\b)|[±]\s*\d", prose)
    assert not stray, f"measured numbers outside generated blocks: {stray}"


def test_the_check_command_sees_a_stale_block(tmp_path, monkeypatch, capsys):
    name = next(iter(D.BLOCKS))
    stale = DOC_TEXT.replace(D.blocks_of(DOC_TEXT)[name], "| stale |\n", 1)
    doc = tmp_path / "findings.md"
    doc.write_text(stale, encoding="utf-8")
    monkeypatch.setattr(D, "DOC", doc)
    assert main(["--check"]) == 1
    assert f"block {name!r} differs" in capsys.readouterr().out
    assert main([]) == 0
    assert main(["--check"]) == 0
    assert doc.read_text(encoding="utf-8") == DOC_TEXT


@pytest.mark.parametrize(("scale", "study"), HAVE)
def test_the_report_rebuilds_from_each_findings_folder(scale, study, tmp_path):
    index = build_report(scale.root / study, tmp_path / "report")
    assert index.is_file()
    assert (index.parent / f"{D.PICTURE_PAGES[study]}.html").is_file()
    # recorded before provenance was: the overview says so rather than failing
    assert "<tr><th>code version</th><td>not recorded</td></tr>" in index.read_text()


@pytest.mark.parametrize(("scale", "study"), HAVE)
def test_each_study_has_its_picture(scale, study):
    png = scale.pictures / f"{study}.png"
    assert f"{png.relative_to(REPO / 'docs').as_posix()}" in DOC_TEXT
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] >= 800 and im.size[1] >= 500
        # drawn, not blank: a plot has many distinct colours
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20) or ()) > 50


def test_the_asha_comparison_in_the_benchmarks_readme_matches_the_committed_runs():
    """benchmarks/README.md's ASHA table (issue 10, target 6) against benchmarks/asha.py on the
    committed full grid and ASHA run: every cell but the wall time (which needs the trial
    folders, not committed)."""
    spec = importlib.util.spec_from_file_location("asha", REPO / "benchmarks" / "asha.py")
    asha = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(asha)
    readme = (REPO / "benchmarks" / "README.md").read_text(encoding="utf-8")
    for name, folder in (("full grid", "alpha_gamma"), ("ASHA", "alpha_gamma_asha")):
        cells = asha.row(asha.summary(FINDINGS / folder))
        line = next(x for x in readme.splitlines() if x.startswith(f"| {name} | 75 "))
        printed = [c.strip() for c in line.strip("|").split("|")][1:]
        assert printed[:3] == cells[:3] and printed[4:] == cells[4:], name
