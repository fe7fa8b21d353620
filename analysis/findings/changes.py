"""Which verdicts change with scale: every comparison tested at two scales, side by side.

The verdict blocks of each study module are read as they are printed (verdicts.line): a line

    - what, metric: +3.1 pp (95% CI ...; n = 3 pairs; p_Holm = 0.041): confirmed

under its family's title. A comparison is the same at two scales when its family and its
`what, metric` are, up to the values a study selects on validation (claim 2's best cell and
best alpha or gamma, and claim 4's count of separable pairs and its closest pair, which may
differ by scale: they read `·` here, and each scale's own lines name them). A comparison
tested at one scale only (a cell the other's grid lacks) is left out of the table and counted
below it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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
)


@dataclass(frozen=True)
class Verdict:
    """One verdict line: its family's title, what it compares (selected values masked), the
    difference as printed, and the verdict."""

    family: str
    what: str
    diff: str
    verdict: str


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
            out.append(Verdict(family, key(m.group("what")), m.group("diff"), m.group("verdict")))
    return out


def table(
    studies: Sequence[tuple[str, Sequence[Callable[[Path], str]]]],
    scales: Sequence[tuple[str, Path]],
    has_results: Callable[[Path, str], bool],
) -> str:
    """The comparisons of each study tested at both scales (a study committed at both): one row
    each, both verdicts with their differences, and whether the verdict changed."""
    (name_a, root_a), (name_b, root_b) = scales
    lines = [
        f"| study | family | comparison | {name_a} | {name_b} | changed |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    changed = same = only = 0
    for study, makers in studies:
        if not (has_results(root_a, study) and has_results(root_b, study)):
            continue
        a = {(v.family, v.what): v for make in makers for v in parse(make(root_a))}
        b = {(v.family, v.what): v for make in makers for v in parse(make(root_b))}
        only += len(a.keys() ^ b.keys())
        for k in (k for k in b if k in a):
            va, vb = a[k], b[k]
            differs = va.verdict != vb.verdict
            changed += differs
            same += not differs
            lines.append(
                f"| {study} | {k[0]} | {k[1]} | {va.verdict} ({va.diff}) | {vb.verdict} "
                f"({vb.diff}) | {'**yes**' if differs else 'no'} |"
            )
    lines += [
        "",
        f"{changed} of {changed + same} verdicts tested at both scales change; {only} "
        "comparison(s) tested at one scale only (a cell the other's grid lacks) are left out.",
    ]
    return "\n".join(lines) + "\n"
