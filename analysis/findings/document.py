"""docs/findings.md: its generated blocks, each made by one study module from findings/<study>/.

Each block sits between `<!-- findings:NAME -->` and `<!-- /findings -->`; NAME says the claim
the block belongs to (`claim1_table`), as the document's sections do, and the study module that
makes it declares it in its BLOCKS.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from analysis.findings import alpha_gamma, ensemble_size, optimizers, sharing
from analysis.findings.data import FINDINGS
from analysis.schema import STUDIES as KNOWN_STUDIES
from core import columns as C

DOC = Path(__file__).resolve().parents[2] / "docs" / "findings.md"
BLOCK = re.compile(r"<!-- findings:([a-z0-9_]+) -->\n(.*?)<!-- /findings -->", re.S)

STUDY_MODULES = (optimizers, alpha_gamma, ensemble_size, sharing)
# The studies with findings: those of analysis.schema with a module here, in its order.
STUDIES = tuple(s for s in KNOWN_STUDIES if s in {m.STUDY for m in STUDY_MODULES})
# Each generated block of docs/findings.md: its name and what makes it from findings/.
BLOCKS: dict[str, Callable[[Path], str]] = {
    name: make for m in STUDY_MODULES for name, make in m.BLOCKS.items()
}
# The study each block is made from.
STUDY_OF = {name: m.STUDY for m in STUDY_MODULES for name in m.BLOCKS}
# The static picture of each study: the report page it is a screenshot of.
PICTURE_PAGES = {m.STUDY: m.PICTURE_PAGE for m in STUDY_MODULES}


def blocks_of(text: str) -> dict[str, str]:
    """The generated blocks of a document: name -> content."""
    return {m.group(1): m.group(2) for m in BLOCK.finditer(text)}


def available(root: Path = FINDINGS) -> dict[str, Callable[[Path], str]]:
    """The blocks whose study has committed results (a study not yet run has none)."""
    have = {s for s in STUDIES if (root / s / C.RESULTS_FILE).is_file()}
    return {k: f for k, f in BLOCKS.items() if STUDY_OF[k] in have}


def block(name: str, root: Path = FINDINGS, make: dict | None = None) -> str:
    """Block `name`: made from the data, or a line saying that its study has not run yet."""
    make = available(root) if make is None else make
    if name in make:
        return make[name](root)
    study = STUDY_OF[name]
    return f"_Not yet run: `bash findings/run.sh {study}` makes findings/{study}/._\n"


def render(text: str, root: Path = FINDINGS) -> str:
    """`text` with every generated block whose study has results made anew from `root`."""
    make = available(root)

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in BLOCKS:
            raise KeyError(
                f"docs/findings.md has a block {name!r} that analysis.findings does not make"
            )
        return f"<!-- findings:{name} -->\n{block(name, root, make)}<!-- /findings -->"

    return BLOCK.sub(fill, text)
