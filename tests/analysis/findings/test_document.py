"""How docs/findings.md's blocks are declared: each by one study module, under its own name,
once per scale (tests/analysis/test_findings.py ties the blocks to the committed data)."""

from __future__ import annotations

from analysis.findings import document as D
from analysis.schema import STUDIES


def test_each_block_is_declared_by_one_study_module_once_per_scale():
    names = [name for m in D.STUDY_MODULES for name in m.BLOCKS]
    assert len(names) == len(set(names))
    per_scale = sum(len(m.BLOCKS) for s in D.SCALES for m in D.at(s))
    assert len(D.BLOCKS) == per_scale + 1  # + the changes with scale
    assert D.methods not in D.at(D.CPU_SCALE) and D.methods in D.at(D.LEARN_SCALE)
    assert len({s.key for s in D.SCALES}) == len(D.SCALES)
    for scale in D.SCALES:
        for m in D.at(scale):
            assert m.__name__ == f"analysis.findings.{m.STUDY}"
            keys = {f"{scale.key}_{name}" for name in m.BLOCKS}
            assert {D.STUDY_OF[k] for k in keys} == {m.STUDY}
            assert {D.SCALE_OF[k] for k in keys} == {scale}


def test_a_second_scale_is_one_more_entry(tmp_path, monkeypatch):
    """A scale whose studies have not run yet: its blocks say so, naming its command."""
    wide = D.Scale("wide", "a scale that learns", tmp_path, "wide", "run {study}", tmp_path)
    monkeypatch.setattr(D, "SCALE_OF", {**D.SCALE_OF, "wide_claim1_table": wide})
    monkeypatch.setattr(D, "STUDY_OF", {**D.STUDY_OF, "wide_claim1_table": "optimizers"})
    assert not D.has_results(wide, "optimizers")
    assert D.block("wide_claim1_table") == "_Not yet run: `run optimizers` makes its results._\n"


def test_the_findings_studies_are_study_kinds_of_the_report():
    """analysis.schema declares the study names once; the findings cover each study module's."""
    assert {m.STUDY for m in D.STUDY_MODULES} == set(D.STUDIES) <= set(STUDIES)
