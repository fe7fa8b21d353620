"""The learn preset's plateau check, from its committed logs: is 12 epochs enough?

`bash findings/run.sh plateau` trains a 4-member BatchEnsemble (simple_cnn_wide, alpha = gamma =
0.5, Adam 3e-3, cosine schedule, every training image) for 12 and for 20 epochs, seeds 0-2,
each run its own schedule, and copies its logs to findings/plateau/. The rule, stated before
the runs (findings/run.sh): the ensemble has reached its plateau at 12 epochs when the 20-epoch
runs' mean test accuracy is within 1 pp of the 12-epoch runs'. This prints each run's last
epoch and the rule's verdict.

    python benchmarks/plateau.py            # the table from findings/plateau/*.log
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

LOGS = Path(__file__).resolve().parent.parent / "findings" / "plateau"
EPOCHS = (12, 20)
SEEDS = (0, 1, 2)
MARGIN = 0.01  # the rule's 1 pp
FIELD = re.compile(r"(\w+)=([-+\d.naNinf]+)")


def last_epoch(log: Path, epochs: int) -> dict[str, float]:
    """The metrics of the line `epoch=<epochs> ...` of a run's log."""
    if not log.exists():
        raise SystemExit(f"{log}: not found; run `bash findings/run.sh plateau` first")
    for line in log.read_text().splitlines():
        if line.startswith(f"epoch={epochs} "):
            return {k: float(v) for k, v in FIELD.findall(line)}
    raise SystemExit(f"{log}: no epoch={epochs} line (the run did not finish)")


def table() -> list[str]:
    rows = {
        (e, s): last_epoch(LOGS / f"be4_epochs{e}_seed{s}.log", e) for e in EPOCHS for s in SEEDS
    }
    lines = [
        "| epochs | test_acc seed 0 | seed 1 | seed 2 | mean ± sd | test_loss | val_acc |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    means = {}
    for e in EPOCHS:
        acc = [rows[(e, s)]["test_acc"] for s in SEEDS]
        means[e] = statistics.mean(acc)
        loss = statistics.mean(rows[(e, s)]["test_loss"] for s in SEEDS)
        val = statistics.mean(rows[(e, s)]["val_acc"] for s in SEEDS)
        lines.append(
            f"| {e} | "
            + " | ".join(f"{a:.4f}" for a in acc)
            + f" | {means[e]:.4f} ± {statistics.stdev(acc):.4f} | {loss:.4f} | {val:.4f} |"
        )
    gap = means[20] - means[12]
    verdict = "reached" if abs(gap) <= MARGIN else "not reached"
    lines.append("")
    lines.append(
        f"20 - 12 epochs, mean test accuracy: {gap:+.4f}; plateau at 12 epochs by the 1 pp rule: "
        f"{verdict}"
    )
    return lines


if __name__ == "__main__":
    print("\n".join(table()))
