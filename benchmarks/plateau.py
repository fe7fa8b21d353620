"""The learn preset's plateau check, from its committed logs: how many epochs are enough?

`bash findings/run.sh plateau` trains a 4-member BatchEnsemble (simple_cnn_wide, alpha = gamma =
0.5, Adam 3e-3, cosine schedule, every training image) for 12, 20 and 30 epochs, seeds 0-2,
each run its own schedule, and copies its logs to findings/plateau/. The rule, stated before
the runs (findings/run.sh): the ensemble has reached its plateau at E epochs when the next
length's mean test accuracy is within 1 pp of E's. This prints each run's last epoch and the
rule's verdict for each pair of lengths whose runs have all finished (12 and 20 first, 30
added by the later check).

    python benchmarks/plateau.py            # the table from findings/plateau/*.log
"""

from __future__ import annotations

import itertools
import re
import statistics
from pathlib import Path

LOGS = Path(__file__).resolve().parent.parent / "findings" / "plateau"
EPOCHS = (12, 20, 30)
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


def finished(epochs: int) -> bool:
    """All seeds' runs of this length are committed and finished (12 and 20 must be: they
    decided the preset; 30 is the later check, left out until all three have their last
    epoch)."""
    if epochs in EPOCHS[:2]:
        return True
    logs = [LOGS / f"be4_epochs{epochs}_seed{s}.log" for s in SEEDS]
    return all(x.exists() and f"\nepoch={epochs} " in "\n" + x.read_text() for x in logs)


def table() -> list[str]:
    lengths = [e for e in EPOCHS if finished(e)]
    rows = {
        (e, s): last_epoch(LOGS / f"be4_epochs{e}_seed{s}.log", e) for e in lengths for s in SEEDS
    }
    lines = [
        "| epochs | test_acc seed 0 | seed 1 | seed 2 | mean ± sd | test_loss | val_acc |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    means = {}
    for e in lengths:
        acc = [rows[(e, s)]["test_acc"] for s in SEEDS]
        means[e] = statistics.mean(acc)
        loss = statistics.mean(rows[(e, s)]["test_loss"] for s in SEEDS)
        val = statistics.mean(rows[(e, s)]["val_acc"] for s in SEEDS)
        lines.append(
            f"| {e} | "
            + " | ".join(f"{a:.4f}" for a in acc)
            + f" | {means[e]:.4f} ± {statistics.stdev(acc):.4f} | {loss:.4f} | {val:.4f} |"
        )
    lines.append("")
    for short, long in itertools.pairwise(lengths):
        gap = means[long] - means[short]
        verdict = "reached" if abs(gap) <= MARGIN else "not reached"
        lines.append(
            f"{long} - {short} epochs, mean test accuracy: {gap:+.4f}; plateau at {short} epochs "
            f"by the 1 pp rule: {verdict}"
        )
    return lines


if __name__ == "__main__":
    print("\n".join(table()))
