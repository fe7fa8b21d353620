"""The smoke preset learns: its alpha_gamma study's best trial reaches the accuracy floor.

Runs `python tune_jobs/alpha_gamma.py --smoke` on the real CIFAR-10 images into a temporary
storage path, reads its results.parquet and prints the wall time, each trial's accuracies and,
last, `smoke best test accuracy: X (floor 0.30)`; exits 1 below the floor. The best trial is the
one validation selects (highest final val_acc, as the report ranks them); its test accuracy is
the one at its best-validation epoch. A benchmark, not a test: the suite runs the smoke studies
at its own smaller sizes (tests/tune_jobs/conftest.py CI_SIZES).

    python benchmarks/smoke_floor.py --data-dir ../shared/data/cifar10
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from core.columns import FINAL_TEST_ACC, FINAL_VAL_ACC, RESULTS_FILE, TEST_ACC_AT_BEST_VAL

REPO = Path(__file__).resolve().parents[1]
FLOOR = 0.30


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--floor", type=float, default=FLOOR)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="smoke-floor-") as storage:
        cmd = [
            sys.executable,
            "tune_jobs/alpha_gamma.py",
            "--smoke",
            "--data-dir",
            a.data_dir,
            "--storage-path",
            storage,
        ]
        print("$ " + " ".join(cmd), flush=True)
        print(f"load before: {os.getloadavg()[0]:.2f} (1-min average)", flush=True)
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            print(r.stdout[-3000:] + r.stderr[-3000:], file=sys.stderr)
            print(f"smoke study failed with status {r.returncode}", file=sys.stderr)
            return 1
        results = pd.read_parquet(Path(storage) / "alpha_gamma_smoke" / RESULTS_FILE)
    print(f"load after: {os.getloadavg()[0]:.2f} (1-min average)")
    cols = ["alpha", "gamma", "epochs_done", FINAL_VAL_ACC, TEST_ACC_AT_BEST_VAL, FINAL_TEST_ACC]
    print(results[cols].to_string(index=False))
    best = results.loc[results[FINAL_VAL_ACC].idxmax()]
    acc = float(best[TEST_ACC_AT_BEST_VAL])
    print(f"wall time of the smoke study: {wall:.0f} s ({len(results)} trials)")
    print(f"smoke best test accuracy: {acc:.3f} (floor {a.floor:.2f})")
    return 0 if acc >= a.floor else 1


if __name__ == "__main__":
    sys.exit(main())
