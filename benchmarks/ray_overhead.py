"""Ray Tune's overhead on many short trials, through an ordinary study script.

Issue 10, target 7: study wall time against the sum of the trials' own times divided by the
concurrency, at most 15% (Ray's own scalability figure for 1-second trials is +14%). Runs
`tune_jobs/alpha_gamma.py` at the smoke grid with `--seeds` seeds (4 cells each), one short
epoch per trial and no robustness, as a researcher would (a subprocess), and reads each trial's
own time (Ray's `time_total_s` of its last report: set-up, training and evaluation) from its
result.json. Two overheads are printed: of the whole command (Ray's start and shutdown and the
data load included) and of the Tuner alone (from the first trial's start to the last's end).

    python benchmarks/ray_overhead.py --data-dir ../shared/data/cifar10            # 32 trials
    python benchmarks/ray_overhead.py --data-dir ../shared/data/cifar10 --quick    # 8 trials
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def trial_times(exp: Path) -> list[tuple[float, float]]:
    """(start, own seconds) of every trial, from its result.json's last report."""
    out = []
    for f in sorted(exp.glob("train_*/result.json")):
        lines = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        last = lines[-1]
        out.append((last["timestamp"] - last["time_total_s"], last["time_total_s"]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="../shared/data/cifar10")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--quick", action="store_true", help="2 seeds: 8 trials")
    args = p.parse_args()
    seeds = 2 if args.quick else args.seeds
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            str(REPO / "tune_jobs" / "alpha_gamma.py"),
            "--smoke",
            "--no-asha",
            "--seeds",
            str(seeds),
            "--epochs",
            "1",
            "--set",
            "train_subset=1000",
            "--set",
            "test_subset=250",
            "--set",
            "robustness=False",
            "--cpus-per-trial",
            str(args.cpus_per_trial),
            "--data-dir",
            args.data_dir,
            "--storage-path",
            tmp,
            "--name",
            "overhead",
        ]
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.time() - t0
        if r.returncode != 0:
            sys.exit(f"the study failed ({r.returncode}):\n{r.stderr[-3000:]}")
        times = trial_times(Path(tmp) / "overhead")
    concurrency = max(1, int((os.cpu_count() or 1) // args.cpus_per_trial))
    own = sum(t for _, t in times)
    ideal = own / concurrency
    first = min(s for s, _ in times)
    last = max(s + t for s, t in times)
    tuner = last - first
    print(f"{len(times)} trials, concurrency {concurrency} ({args.cpus_per_trial:g} CPU each)")
    print("| what | seconds |")
    print("| --- | --- |")
    print(f"| sum of trials' own times / concurrency | {ideal:.1f} |")
    print(f"| mean trial's own time | {own / len(times):.2f} |")
    print(f"| first trial start -> last trial end (the Tuner) | {tuner:.1f} |")
    print(f"| whole command (Ray start, data, Tuner, tables, shutdown) | {wall:.1f} |")
    print(
        f"overhead: Tuner {tuner / ideal - 1:+.0%}, whole command {wall / ideal - 1:+.0%} "
        "(target <= +15%)"
    )


if __name__ == "__main__":
    main()
