"""Does bf16 change what a trial learns? The CPU preset trained in fp32 and with `auto` (bf16 +
channels_last where the CPU has native bf16 units), a single network and a 4-member
BatchEnsemble, 3 seeds each: test accuracy and NLL at the last epoch, the paired t by seed
(both precisions of a seed share its initialisation and split), Holm's correction over the four.

Issue 21, deliverable 5. Each run is `core.train.train` on the real CIFAR-10 images at the CPU
preset (simple_cnn, 5,000 training images with 10% held out, 2,000 test images, 6 epochs,
Adam 1e-3), one thread, robustness off (accuracy and NLL are the question). Rows are appended
to the CSV as runs finish, so an interrupted run continues where it stopped.

    python benchmarks/bf16_accuracy.py --data-dir ../shared/data/cifar10
    python benchmarks/bf16_accuracy.py --report       # the comparison from the committed CSV
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from scipy import stats

import core.columns as C
from core.config import TrialConfig
from core.train import train

OUT = Path(__file__).parent / "results" / "bf16_accuracy.csv"
CPU_PRESET = {"arch": "simple_cnn", "train_subset": 5000, "test_subset": 2000, "epochs": 6}
MODELS = {
    "single": {"ensemble": "single", "ensemble_size": 1},
    "BE4": {"ensemble": "batch", "ensemble_size": 4},
}
PRECISIONS = {"fp32": {"precision": "fp32", "channels_last": "off"}, "auto": {}}
FIELDS = ("model", "precision", "resolved", "seed", "test_acc", "test_nll", "val_acc")


def run(data_dir: str, seeds: int) -> None:
    done = {(r["model"], r["precision"], int(r["seed"])) for r in _rows()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    new = not OUT.exists()
    with OUT.open("a", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        if new:
            w.writeheader()
        for seed in range(seeds):  # seeds outermost: a partial run is balanced
            for model, mcfg in MODELS.items():
                for prec, pcfg in PRECISIONS.items():
                    if (model, prec, seed) in done:
                        continue
                    cfg = TrialConfig.from_dict(
                        {
                            **CPU_PRESET,
                            **mcfg,
                            **pcfg,
                            "seed": seed,
                            "val_fraction": 0.1,
                            "data_dir": data_dir,
                            "robustness": False,
                            "num_threads": 1,
                        }
                    )
                    last = train(cfg)[-1]  # loads (and splits) the images itself
                    w.writerow(
                        {
                            "model": model,
                            "precision": prec,
                            "resolved": last[C.RESOLVED_PRECISION],
                            "seed": seed,
                            "test_acc": last[C.TEST_ACC],
                            "test_nll": last[C.TEST_LOSS],
                            "val_acc": last[C.VAL_ACC],
                        }
                    )
                    f.flush()


def _rows() -> list[dict[str, str]]:
    if not OUT.exists():
        return []
    with OUT.open() as f:
        return list(csv.DictReader(f))


def report() -> None:
    """auto - fp32 per model and metric: paired by seed (a seed fixes the initial weights, the
    data split and the batch order for both precisions), Holm's correction over the four
    comparisons."""
    rows = _rows()
    lines = []
    for model in MODELS:
        for metric in ("test_acc", "test_nll"):
            by = {
                p: {
                    int(r["seed"]): float(r[metric])
                    for r in rows
                    if r["model"] == model and r["precision"] == p
                }
                for p in PRECISIONS
            }
            seeds = sorted(set(by["fp32"]) & set(by["auto"]))
            if len(seeds) < 2:
                continue
            a, b = [by["fp32"][s] for s in seeds], [by["auto"][s] for s in seeds]
            p = stats.ttest_rel(b, a).pvalue
            lines.append([model, metric, a, b, p])
    ps = sorted(range(len(lines)), key=lambda i: lines[i][4])
    running = 0.0
    for rank, i in enumerate(ps):  # Holm: step-down, monotone
        running = max(running, min(1.0, (len(lines) - rank) * lines[i][4]))
        lines[i].append(running)
    head = (
        "model | metric | fp32 mean ± sd | auto mean ± sd | auto - fp32 | p paired | p Holm | seeds"
    )
    print(f"| {head} |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    sd, mean = statistics.stdev, statistics.mean
    for model, metric, a, b, p, holm in lines:
        print(
            f"| {model} | {metric} | {mean(a):.4f} ± {sd(a):.4f} | {mean(b):.4f} ± {sd(b):.4f} "
            f"| {mean(b) - mean(a):+.4f} | {p:.2f} | {holm:.2f} | {len(a)} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="../shared/data/cifar10")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--report", action="store_true", help="only print the comparison")
    a = p.parse_args()
    if not a.report:
        run(a.data_dir, a.seeds)
    report()


if __name__ == "__main__":
    main()
