"""Training images/s of vgg11 single, BatchEnsemble 4 and 8 under fp32, bf16 and compiled.

Issue 10, targets 3 and 4 on a GPU: what `precision`, `channels_last` and `compile` buy, and
the fraction of the device's peak FLOP/s the training loop reaches (training FLOPs per image
from core.cost x images/s, against `--peak-tflops`: the H200's dense bf16 figure, 989, by
default; this machine's own bf16 matrix product measured about 790). Each case is the training
loop of `core.train.time_train_steps` (loader, augmentation, step) on synthetic images
(throughput does not depend on what the pixels show), interleaved over rounds, medians.

    python benchmarks/precision.py --device cuda                 # the GPU record
    python benchmarks/precision.py --device cpu --quick          # that it runs (minutes)
"""

from __future__ import annotations

import argparse
import statistics

import torch

from core.config import TrialConfig
from core.cost import train_flops_per_image
from core.data import DataBundle
from core.models import model_for_config
from core.train import time_train_steps

MODELS = {"single": ("single", 1), "BE4": ("batch", 4), "BE8": ("batch", 8)}
# (label, precision, channels_last, compile)
MODES = (
    ("fp32", "fp32", "off", "off"),
    ("bf16", "bf16", "off", "off"),
    ("bf16 + channels_last", "bf16", "on", "off"),
    ("bf16 + channels_last + compiled", "bf16", "on", "on"),
)


def synthetic(n: int = 4096, classes: int = 10) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % classes
    return DataBundle(x, y, x[:512], y[:512], name="cifar10")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--arch", default="vgg11")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--quick", action="store_true", help="1 round of 3 steps, no compile, no BE8")
    args = p.parse_args()
    modes, models = MODES, MODELS
    if args.quick:
        args.rounds, args.steps = 1, 3
        modes = tuple(m for m in MODES if m[3] == "off")
        models = {k: v for k, v in MODELS.items() if k != "BE8"}
    data = synthetic()
    times: dict[tuple[str, str], list[float]] = {}
    flops: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, (ensemble, size) in models.items():
            for label, precision, cl, comp in modes:
                cfg = TrialConfig(
                    arch=args.arch,
                    ensemble=ensemble,
                    ensemble_size=size,
                    device=args.device,
                    precision=precision,
                    channels_last=cl,
                    compile=comp,
                    robustness=False,
                    dataset="cifar10",
                )
                if name not in flops:
                    model = model_for_config(cfg, 10, 3)
                    flops[name] = train_flops_per_image(model, cfg, (3, 32, 32), 10)
                # compiled: the warm-up steps include compiling, so they are not timed
                warmup = 5 if comp == "on" else 2
                r = time_train_steps(cfg, data, steps=args.steps, warmup=warmup)
                times.setdefault((name, label), []).append(r["calib_images_per_s"])
    print(f"device {args.device}, {args.arch}, batch 128, {args.rounds} round(s) x {args.steps}")
    print("| model | mode | images/s | training TFLOP/s | of peak |")
    print("| --- | --- | --- | --- | --- |")
    best = 0.0
    for (name, label), v in times.items():
        ips = statistics.median(v)
        tflops = ips * flops[name] / 1e12
        best = max(best, tflops / args.peak_tflops)
        print(f"| {name} | {label} | {ips:,.0f} | {tflops:.2f} | {tflops / args.peak_tflops:.1%} |")
    fp32 = statistics.median(times[("BE4", "fp32")])
    bf16 = statistics.median(times[("BE4", "bf16")])
    print(f"BE4 bf16 / fp32 images/s: {bf16 / fp32:.2f}x; best fraction of peak: {best:.1%}")


if __name__ == "__main__":
    main()
