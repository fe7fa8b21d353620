"""Seconds per epoch of the learn preset's network (simple_cnn_wide), single and BatchEnsemble
4 and 8, in fp32 and in bf16 + channels_last: what the learn preset's grids are sized from.

An epoch of the learn preset is 141 training steps of batch 128 (the 18,000 training images
left after the 10% validation split of ../shared/data/cifar10's 20,000) and one evaluation of
12,000 images (2,000 validation, 10,000 test). Each case times `core.train.time_train_steps`
(loader, augmentation, step) on the real images, then the evaluation forward pass
(`core.optim.predict_probs`, batches of 256) on test images; rounds interleave the cases and
the table prints medians. One torch thread, as a trial with --cpus-per-trial 1 runs.

    python benchmarks/learn_epoch.py --data-dir ../shared/data/cifar10
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from core.config import TrialConfig
from core.data import load_dataset, load_for_config
from core.models import model_for_config
from core.optim import predict_probs
from core.runtime import prepare_model, resolve_runtime
from core.train import time_train_steps

MODELS = {"single": ("single", 1), "BE4": ("batch", 4), "BE8": ("batch", 8)}
MODES = {"fp32": ("fp32", "off"), "bf16 + channels_last": ("bf16", "on")}
TRAIN_STEPS = 141  # 18,000 images / 128, rounded up
EVAL_IMAGES = 12_000  # validation 2,000 + test 10,000


def eval_s_per_image(cfg: TrialConfig, data, batches: int) -> float:
    """Seconds per image of the evaluation forward pass (eval mode, no gradients)."""
    device = torch.device("cpu")
    runtime = resolve_runtime(cfg, device)
    model = prepare_model(model_for_config(cfg, 10, 3), runtime).eval()
    x = data.test_x[: 256 * batches].float().div(255)
    predict_probs(model, None, runtime.batch(x[:256]), cfg, runtime.autocast)  # warm-up
    t0 = time.perf_counter()
    for i in range(batches):
        predict_probs(model, None, runtime.batch(x[256 * i : 256 * (i + 1)]), cfg, runtime.autocast)
    return (time.perf_counter() - t0) / (256 * batches)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="../shared/data/cifar10")
    p.add_argument("--arch", default="simple_cnn_wide")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--eval-batches", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    raw = load_dataset("cifar10", args.data_dir)
    step_s: dict[tuple[str, str], list[float]] = {}
    eval_s: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name, (ensemble, size) in MODELS.items():
            for label, (precision, cl) in MODES.items():
                cfg = TrialConfig(
                    arch=args.arch,
                    ensemble=ensemble,
                    ensemble_size=size,
                    alpha=None if ensemble == "single" else 0.5,
                    gamma=None if ensemble == "single" else 0.5,
                    precision=precision,
                    channels_last=cl,
                    compile="off",
                    val_fraction=0.1,
                    robustness=False,
                    num_threads=1,
                    data_dir=args.data_dir,
                )
                r = time_train_steps(cfg, raw, steps=args.steps, warmup=2)
                step_s.setdefault((name, label), []).append(1 / r["calib_batches_per_s"])
                split = load_for_config(cfg, raw)
                eval_s.setdefault((name, label), []).append(
                    eval_s_per_image(cfg, split, args.eval_batches)
                )
    print(f"{args.arch}, 1 thread, batch 128, {args.rounds} round(s) x {args.steps} steps")
    print("| model | mode | s per step | s per epoch, training | evaluation | epoch |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (name, label), v in step_s.items():
        s = statistics.median(v)
        ev = statistics.median(eval_s[(name, label)]) * EVAL_IMAGES
        tr = s * TRAIN_STEPS
        print(f"| {name} | {label} | {s:.3f} | {tr:.1f} | {ev:.1f} | {tr + ev:.1f} |")


if __name__ == "__main__":
    main()
