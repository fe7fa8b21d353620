"""Which verdicts change with scale: every comparison tested at two scales, side by side.

The verdict blocks of each study module are read as they are printed (verdicts.line): a line

    - what, metric: +3.1 pp (95% CI ...; n = 3 pairs; p_Holm = 0.041): confirmed

under its family's title. A comparison is the same at two scales when its family and its
`what, metric` are, up to the values a study selects on validation (claim 2's best cell and
best alpha or gamma, and claim 4's count of separable pairs and its closest pair, which may
differ by scale: they read `·` here, and each scale's own lines name them; claim 3's
flattening step is the two largest sizes of each grid). A comparison tested at one scale only
(a cell the other's grid lacks) is left out of the table and counted below it; one that could
not be tested at a scale (no difference: too few usable trials) is shown, marked, and not
counted as a change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from analysis.findings.data import committed

FAMILY = re.compile(r"^\*(?P<title>.+)\* \(Holm over \d+ tests")
LINE = re.compile(
    r"^- (?P<what>.+): (?P<diff>(?:[+-][\d.,]+|-)(?: pp)?) \((?P<stats>[^()]*)\): (?P<verdict>.+)$"
)
# What a line names from its scale's data, which may differ between scales: the cells and
# values a study selects on validation (claim 2), and the count and the closest pair of a
# summary line over every pair (claim 4's ECE and AUROC).
SELECTED = (
    (re.compile(r"\((-?[\d.]+), (-?[\d.]+)\)"), "(·, ·)"),
    (re.compile(r"\b(alpha|gamma) = -?[\d.]+"), r"\1 = ·"),
    (re.compile(r"\d+ of (\d+) pairs separable; the closest, [^,]+"), r"· of \1 pairs separable"),
    # claim 3's flattening step: the two largest sizes of each grid (8 - 6 against 8 - 4)
    (
        re.compile(r"\d+ - \d+ members \(the claim: flattens\)"),
        "the largest step (the claim: flattens)",
    ),
)
UNTESTABLE = "untestable"  # a comparison without a test at a scale (too few usable trials)


@dataclass(frozen=True)
class Verdict:
    """One verdict line: its family's title, what it compares (selected values masked), its
    test (an equivalence, TOST, or a difference: a comparison may be printed as both), the
    difference as printed, and the verdict (UNTESTABLE where no difference could be computed)."""

    family: str
    what: str
    test: str
    diff: str
    verdict: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.family, self.what, self.test


def key(what: str) -> str:
    for pattern, mask in SELECTED:
        what = pattern.sub(mask, what)
    return what


def parse(text: str) -> list[Verdict]:
    """The verdict lines of a generated block, each under its family's title."""
    out, family = [], ""
    for line in text.splitlines():
        if m := FAMILY.match(line):
            family = m.group("title")
        elif m := LINE.match(line):
            test = "equivalence" if "margin" in m.group("stats") else "difference"
            diff = m.group("diff")
            verdict = UNTESTABLE if diff.startswith("-") and not diff[1:2].isdigit() else None
            out.append(
                Verdict(family, key(m.group("what")), test, diff, verdict or m.group("verdict"))
            )
    return out


def _by_key(verdicts: list[Verdict]) -> dict[tuple[str, str, str], Verdict]:
    out = {v.key: v for v in verdicts}
    if len(out) != len(verdicts):
        raise ValueError("two verdict lines of a study read as the same comparison")
    return out


def table(
    studies: Sequence[tuple[str, Sequence[Callable[[Path], str]]]],
    scales: Sequence[tuple[str, Path]],
) -> str:
    """The comparisons of each study tested at both scales (a study committed at both): one row
    each, both verdicts with their differences, and whether the verdict changed."""
    (name_a, root_a), (name_b, root_b) = scales
    lines = [
        f"| study | family | comparison | test | {name_a} | {name_b} | changed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    changed = same = untestable = only = 0
    for study, makers in studies:
        if not (committed(study, root_a) and committed(study, root_b)):
            continue
        a = _by_key([v for make in makers for v in parse(make(root_a))])
        b = _by_key([v for make in makers for v in parse(make(root_b))])
        only += len(a.keys() ^ b.keys())
        for k in (k for k in b if k in a):
            va, vb = a[k], b[k]
            if UNTESTABLE in (va.verdict, vb.verdict):
                mark = "-"
                untestable += 1
            elif va.verdict != vb.verdict:
                mark = "**yes**"
                changed += 1
            else:
                mark = "no"
                same += 1
            lines.append(
                f"| {study} | {k[0]} | {k[1]} | {k[2]} | {va.verdict} ({va.diff}) | "
                f"{vb.verdict} ({vb.diff}) | {mark} |"
            )
    lines += [
        "",
        f"{changed} of {changed + same} verdicts tested at both scales change; {untestable} "
        f"comparison(s) untestable at one scale (too few usable trials) and {only} tested at "
        "one scale only (a cell the other's grid lacks) are left out of that count.",
    ]
    return "\n".join(lines) + "\n"
