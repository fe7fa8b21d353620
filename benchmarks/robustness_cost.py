"""Cost of the robustness evaluation (corrupted test sets + OOD detection) of a smoke trial.

Runs the smoke preset's trial (tune_jobs.options.SMOKE: simple_cnn, 4,000 training and 500 test
images, 4 epochs, corruption_subset 10, ood_subset 100) with robustness off and on, alternating,
`--repeats` times each, and prints the median wall times and the ratio
robustness_s / (trial time without robustness). The issue's target: under 20%.

    python benchmarks/robustness_cost.py --data-dir ../shared/data/cifar10
"""

import argparse
import statistics
import time

import torch

from core import columns as C
from core.config import TrialConfig
from core.data import load_dataset
from core.train import train
from tune_jobs.options import SMOKE


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", nargs="*", default=[], help="field=value overrides (ints only)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("cifar10", args.data_dir)
    base = {**SMOKE, "dataset": "cifar10", "device": args.device, "num_threads": args.threads}
    base.update({k: int(v) for k, v in (s.split("=") for s in args.set)})
    train(TrialConfig.from_dict({**base, "epochs": 1}), data=data)  # warm-up
    off, on, rob = [], [], []
    for _ in range(args.repeats):
        for flag, times in ((False, off), (True, on)):
            cfg = TrialConfig.from_dict({**base, "robustness": flag})
            t0 = time.perf_counter()
            history = train(cfg, data=data)
            times.append(time.perf_counter() - t0)
            if flag:
                rob.append(history[-1][C.ROBUSTNESS_S])
    t_off, t_on, t_rob = (statistics.median(v) for v in (off, on, rob))
    print(f"config: {base}")
    print(f"trial without robustness: {t_off:.2f} s (median of {args.repeats})")
    print(f"trial with robustness:    {t_on:.2f} s")
    print(f"robustness_s reported:    {t_rob:.2f} s")
    print(f"ratio robustness_s / trial without: {t_rob / t_off:.1%} (target < 20%)")
    print(f"ratio (with - without) / without:   {(t_on - t_off) / t_off:.1%}")


if __name__ == "__main__":
    main()
