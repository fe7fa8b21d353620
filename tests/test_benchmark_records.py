"""Numbers benchmarks/README.md reports from committed data match that data."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_bf16_accuracy_table_is_the_committed_comparison():
    """The table under "bf16 on the CPU" is what bf16_accuracy.py --report prints from
    benchmarks/results/bf16_accuracy.csv, row for row."""
    out = subprocess.run(
        [sys.executable, "benchmarks/bf16_accuracy.py", "--report"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(rows) == 2 + 4  # header, rule, 2 models x 2 metrics
    readme = (REPO / "benchmarks" / "README.md").read_text().splitlines()
    for row in rows:
        assert row in readme, row
