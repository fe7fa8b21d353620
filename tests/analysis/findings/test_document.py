"""How docs/findings.md's blocks are declared: each by one study module, under its own name
(tests/analysis/test_findings.py ties the blocks to the committed data)."""

from __future__ import annotations

from analysis.findings import document as D


def test_each_block_is_declared_by_one_study_module():
    names = [name for m in D.STUDY_MODULES for name in m.BLOCKS]
    assert len(names) == len(set(names)) == len(D.BLOCKS)
    for m in D.STUDY_MODULES:
        assert m.__name__ == f"analysis.findings.{m.STUDY}"
        assert {D.STUDY_OF[name] for name in m.BLOCKS} == {m.STUDY}
