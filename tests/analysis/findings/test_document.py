"""How docs/findings.md's blocks are declared: each by one study module, under its own name
(tests/analysis/test_findings.py ties the blocks to the committed data)."""

from __future__ import annotations

from analysis.findings import document as D
from analysis.schema import STUDIES


def test_each_block_is_declared_by_one_study_module():
    names = [name for m in D.STUDY_MODULES for name in m.BLOCKS]
    assert len(names) == len(set(names)) == len(D.BLOCKS)
    for m in D.STUDY_MODULES:
        assert m.__name__ == f"analysis.findings.{m.STUDY}"
        assert {D.STUDY_OF[name] for name in m.BLOCKS} == {m.STUDY}


def test_the_findings_studies_are_study_kinds_of_the_report():
    """analysis.schema declares the study names once; the findings cover each study module's."""
    assert {m.STUDY for m in D.STUDY_MODULES} == set(D.STUDIES) <= set(STUDIES)
