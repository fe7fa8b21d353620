"""The command line of the findings (the package's docstring shows its three uses)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import analysis.findings
from analysis.findings import document
from analysis.findings.pictures import picture


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m analysis.findings", description=analysis.findings.__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--check", action="store_true", help="exit 1 if docs/findings.md differs from the data"
    )
    p.add_argument("--pictures", action="store_true", help="also redraw each scale's <study>.png")
    args = p.parse_args(argv)
    text = document.DOC.read_text(encoding="utf-8")
    new = document.render(text)
    if args.check:
        old = document.blocks_of(text)
        stale = [k for k, v in document.blocks_of(new).items() if old.get(k) != v]
        for k in stale:
            print(
                f"docs/findings.md: block {k!r} differs from findings/ "
                "(run python -m analysis.findings)"
            )
        return 1 if stale else 0
    document.DOC.write_text(new, encoding="utf-8")
    made = len(document.available())
    print(f"wrote {document.DOC} ({made} of {len(document.BLOCKS)} blocks from findings/)")
    if args.pictures:
        for scale in document.SCALES:
            for study in document.STUDIES:
                if document.has_results(scale, study):
                    page, out = document.PICTURE_PAGES[study], scale.pictures / f"{study}.png"
                    print(f"wrote {picture(study, page, out, scale.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
