"""ASHA against the full grid: the same study run both ways, compared.

Issue 10, target 6: an alpha x gamma grid on the real images at a CPU scale, run as the full
grid (`--no-asha`) and with ASHA; ASHA uses at most 40% of the full grid's epochs and its best
configuration (selected on validation) is within 1 percentage point of the full grid's best on
test. This script reads two finished experiment folders (the storage a study wrote, with its
trial folders) and prints epochs, trial-seconds, wall time and the two selections:

    PYTHONPATH=$PWD bash findings/run.sh alpha_gamma          # the full grid (findings)
    python tune_jobs/alpha_gamma.py --preset cpu --seeds 3 --grace-period 1 \\
        --data-dir ../shared/data/cifar10 --storage-path findings/runs --name alpha_gamma_asha
    python benchmarks/asha.py findings/runs/alpha_gamma findings/runs/alpha_gamma_asha
    python benchmarks/asha.py findings/alpha_gamma findings/alpha_gamma_asha   # committed copies

Selection is the report's (analysis.overview.best_configurations: the mean over seeds of the
final validation accuracy). With ASHA only the trials that ran every epoch are ranked, since a
stopped trial's last validation accuracy is of an earlier epoch; a configuration counts if at
least one of its seeds ran to the end. Wall time is the time at least one trial was running
(from each trial's result.json), so a study interrupted and resumed is not charged the gap.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from analysis.load import load_experiment
from analysis.overview import best_configurations, selection_of
from analysis.tidy import ASHA_STOPPED
from core import columns as C

SWEPT = ["alpha", "gamma"]
TEST = C.FINAL_TEST_ACC


def busy_seconds(exp: Path) -> float:
    """Seconds during which at least one trial ran (union of the trials' intervals)."""
    spans = []
    for f in exp.glob("train_*/result.json"):
        lines = [json.loads(s) for s in f.read_text().splitlines() if s.strip()]
        if lines:
            end = lines[-1]["timestamp"]
            spans.append((end - lines[-1]["time_total_s"], end))
    total, cur_start, cur_end = 0.0, None, None
    for s, e in sorted(spans):
        if cur_end is None or s > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = s, e
        else:
            cur_end = max(cur_end, e)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def summary(exp: Path) -> dict:
    loaded = load_experiment(exp)
    results = loaded.results  # tidy (with each trial's outcome)
    full = results[~results["outcome"].eq(ASHA_STOPPED)]
    sel = selection_of(loaded.meta)  # the study's selection metric, as the report ranks
    best = best_configurations(full, SWEPT, sel, k=1).iloc[0]
    return {
        "trials": len(results),
        "stopped": int(results["outcome"].eq(ASHA_STOPPED).sum()),
        "epochs": int(results[C.EPOCHS_DONE].sum()),
        "trial_s": float(results[C.TOTAL_S].sum()),
        "wall_s": busy_seconds(exp),
        "best": {k: float(best[k]) for k in SWEPT},
        "val": float(best[f"{sel.column}_mean"]),
        "test": float(best[f"{TEST}_mean"]),
        "n": int(best[f"{sel.column}_n"]),
        "results": results,
    }


def row(s: dict) -> list[str]:
    """A run's cells of the printed table (benchmarks/README.md holds them)."""
    wall = f"{s['wall_s'] / 60:.1f} min" if s["wall_s"] else "n/a"
    return [
        f"{s['trials']} ({s['stopped']})",
        str(s["epochs"]),
        f"{s['trial_s']:.0f}",
        wall,
        f"({s['best']['alpha']:g}, {s['best']['gamma']:g})",
        f"{s['val']:.4f} ({s['n']})",
        f"{s['test']:.4f}",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("full", type=Path, help="experiment folder of the full grid (--no-asha)")
    p.add_argument("asha", type=Path, help="experiment folder of the same study with ASHA")
    a = p.parse_args()
    full, asha = summary(a.full), summary(a.asha)
    # the test accuracy of ASHA's choice in the full grid too (the same seeds, every epoch)
    r = full["results"]
    same = r[(r["alpha"] == asha["best"]["alpha"]) & (r["gamma"] == asha["best"]["gamma"])]
    asha_in_full = float(same[TEST].mean())
    print(
        "| run | trials (stopped) | epochs | trial-seconds | wall (min) | best (alpha, gamma) "
        "| its val acc (n) | its test acc |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, s in (("full grid", full), ("ASHA", asha)):
        print(f"| {name} | " + " | ".join(row(s)) + " |")
    gap = 100 * (full["test"] - asha["test"])
    print(f"ASHA's choice in the full grid (all seeds, every epoch): test acc {asha_in_full:.4f}")
    wall = (
        f"{asha['wall_s'] / full['wall_s']:.0%} of its wall time"
        if full["wall_s"] and asha["wall_s"]
        else "wall time unknown (no trial folders: the committed copies hold the tables only)"
    )
    print(
        f"ASHA: {asha['epochs'] / full['epochs']:.0%} of the full grid's epochs (target <= 40%), "
        f"{wall}; best on test {gap:+.2f} pp below the full grid's best (target within 1 pp)"
    )


if __name__ == "__main__":
    main()
