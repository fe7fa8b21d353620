"""docs/findings.md: its sections, one per scale of the studies, and their generated blocks, each
made by one study module from one scale's findings/<study>/.

Each block sits between `<!-- findings:NAME -->` and `<!-- /findings -->`; NAME is the scale's
key and the name the study module declares in its BLOCKS (`cpu_claim1_table`: claim 1's table
at the CPU scale). Each scale is one entry of SCALES, its studies' files in its own folder
(the CPU scale's findings/<study>/, the learn scale's findings/learn/<study>/), and its blocks
in its own section of the document: the same study modules and the same tests make them. One
more block, CHANGES, sets every verdict tested at both scales side by side (`changes`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from analysis.findings import (
    alpha_gamma,
    changes,
    ensemble_size,
    methods,
    optimizers,
    sharing,
)
from analysis.findings.data import FINDINGS, committed
from analysis.findings.pictures import PICTURES
from analysis.schema import STUDIES as KNOWN_STUDIES

DOC = Path(__file__).resolve().parents[2] / "docs" / "findings.md"
BLOCK = re.compile(r"<!-- findings:([a-z0-9_]+) -->\n(.*?)<!-- /findings -->", re.S)


@dataclass(frozen=True)
class Scale:
    """One scale of the studies: its key (the prefix of its blocks' names), its section's
    title, the folder of its findings/<study>/ folders, the `--preset` its studies ran at, the
    command that makes a study's folder, and the folder of its pictures."""

    key: str
    title: str
    root: Path
    preset: str
    command: str
    pictures: Path


SCALES = (
    Scale(
        "learn",
        "Learn scale (networks that learn)",
        FINDINGS / "learn",
        "learn",
        "bash findings/run.sh --preset learn {study}",
        PICTURES / "learn",
    ),
    Scale(
        "cpu",
        "CPU scale (underfitting)",
        FINDINGS,
        "cpu",
        "bash findings/run.sh {study}",
        PICTURES,
    ),
)
STUDY_MODULES = (optimizers, alpha_gamma, ensemble_size, sharing, methods)


def at(scale: Scale) -> list:
    """The study modules with blocks at a scale: every one, but for those that name their
    scales (`SCALE_KEYS`: the methods study runs at the learn scale only)."""
    return [m for m in STUDY_MODULES if scale.key in getattr(m, "SCALE_KEYS", (scale.key,))]


# The studies with findings: those of analysis.schema with a module here, in its order.
STUDIES = tuple(s for s in KNOWN_STUDIES if s in {m.STUDY for m in STUDY_MODULES})
# Each generated block of docs/findings.md: its name and what makes it from its scale's data.
BLOCKS: dict[str, Callable[[], str]] = {
    f"{s.key}_{name}": functools.partial(make, s.root)
    for s in SCALES
    for m in at(s)
    for name, make in m.BLOCKS.items()
}
# The study and the scale each block is made from.
STUDY_OF: dict[str, str | None] = {
    f"{s.key}_{name}": m.STUDY for s in SCALES for m in at(s) for name in m.BLOCKS
}
SCALE_OF = {f"{s.key}_{name}": s for s in SCALES for m in at(s) for name in m.BLOCKS}
# The block of the verdicts that change from the CPU scale to the learn scale; it sits in the
# learn scale's section (STUDY_OF None: made from every study committed at both scales).
CHANGES = "learn_changes"
CPU_SCALE, LEARN_SCALE = (next(s for s in SCALES if s.key == k) for k in ("cpu", "learn"))


def changes_table() -> str:
    return changes.table(
        [
            (m.STUDY, [f for n, f in m.BLOCKS.items() if n.endswith("verdicts")])
            for m in STUDY_MODULES
        ],
        [("CPU scale", CPU_SCALE.root), ("learn scale", LEARN_SCALE.root)],
    )


BLOCKS[CHANGES] = changes_table
STUDY_OF[CHANGES] = None
SCALE_OF[CHANGES] = LEARN_SCALE
# The static picture of each study: the report page it is a screenshot of.
PICTURE_PAGES = {m.STUDY: m.PICTURE_PAGE for m in STUDY_MODULES}


def blocks_of(text: str) -> dict[str, str]:
    """The generated blocks of a document: name -> content."""
    return {m.group(1): m.group(2) for m in BLOCK.finditer(text)}


def has_results(scale: Scale, study: str | None) -> bool:
    """Whether a study's results are committed at a scale (None: for the changes block, any
    study at both this scale and the CPU scale)."""
    if study is None:
        return any(has_results(scale, s) and has_results(CPU_SCALE, s) for s in STUDIES)
    return committed(study, scale.root)


def available() -> dict[str, Callable[[], str]]:
    """The blocks whose study has committed results at their scale (a study not yet run has
    none)."""
    return {k: f for k, f in BLOCKS.items() if has_results(SCALE_OF[k], STUDY_OF[k])}


def block(name: str) -> str:
    """Block `name`: made from the data, or a line saying that its study has not run yet."""
    scale, study = SCALE_OF[name], STUDY_OF[name]
    if has_results(scale, study):
        return BLOCKS[name]()
    command = scale.command.format(study=study or "").rstrip()
    return f"_Not yet run: `{command}` makes its results._\n"


def render(text: str) -> str:
    """`text` with every generated block made anew from the data."""

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in BLOCKS:
            raise KeyError(
                f"docs/findings.md has a block {name!r} that analysis.findings does not make"
            )
        return f"<!-- findings:{name} -->\n{block(name)}<!-- /findings -->"

    return BLOCK.sub(fill, text)
