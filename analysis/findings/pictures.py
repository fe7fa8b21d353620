"""docs/findings/<study>.png: a screenshot of one page of the study's report (headless chromium)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from analysis.findings.data import FINDINGS
from core import columns as C

PICTURES = Path(__file__).resolve().parents[2] / "docs" / "findings"


def picture(
    study: str, page: str, out: Path, root: Path = FINDINGS, chromium: str = "/usr/bin/chromium"
) -> Path:
    """A PNG screenshot of the report page `page` (its file name without .html) of
    findings/<study>/, written to `out`."""
    from analysis.report import build_report

    with tempfile.TemporaryDirectory() as tmp:
        exp = Path(tmp) / study
        exp.mkdir()
        for name in (C.RESULTS_FILE, C.HISTORY_FILE, C.STUDY_FILE):
            if (root / study / name).is_file():
                (exp / name).write_bytes((root / study / name).read_bytes())
        index = build_report(exp, Path(tmp) / "report")
        html = index.parent / f"{page}.html"
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={Path(tmp) / 'profile'}",
                "--proxy-server=127.0.0.1:9",
                "--window-size=1100,1150",
                "--virtual-time-budget=5000",
                f"--screenshot={out}",
                html.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return out
