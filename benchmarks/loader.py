"""Augmented training batches: the platform's tensor loader against torchvision's usual path.

Issue 10, target 5: the loader delivers augmented batches at least 20x faster than torchvision's
usual path on the same images (ImageFolder with RandomCrop(32, padding=4), RandomHorizontalFlip,
ToTensor, Normalize in a DataLoader with 2 workers), and costs under 5% of a simple_cnn BE4
training step. Cases are interleaved (rounds), each a fresh pass of `--batches` batches of 128;
medians are reported.

    python benchmarks/loader.py --data-dir ../shared/data/cifar10            # the record
    python benchmarks/loader.py --data-dir ../shared/data/cifar10 --quick    # a minute

Prints a table and, last, the headline ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from core.config import TrialConfig
from core.data import TensorLoader, load_dataset
from core.train import time_train_steps

BATCH = 128


def tensor_loader_s(data, batches: int, device: torch.device, seed: int) -> float:
    loader = TensorLoader(
        data.train_x,
        data.train_y,
        BATCH,
        shuffle=True,
        augment=True,
        seed=seed,
        mean=data.mean,
        std=data.std,
        device=device,
    )
    loader.set_epoch(seed)
    t0 = time.perf_counter()
    for i, _batch in enumerate(loader):
        if i + 1 == batches:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / batches


def torchvision_loader(root: Path, mean, std):
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(list(mean), list(std)),
        ]
    )
    ds = datasets.ImageFolder(str(root / "train"), transform=tf)
    return torch.utils.data.DataLoader(
        ds, batch_size=BATCH, shuffle=True, num_workers=2, persistent_workers=False
    )


def torchvision_s(loader, batches: int) -> float:
    """Seconds per batch of one pass, worker start-up included (as each epoch pays it)."""
    t0 = time.perf_counter()
    for i, _batch in enumerate(loader):
        if i + 1 == batches:
            break
    return (time.perf_counter() - t0) / batches


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="../shared/data/cifar10")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--quick", action="store_true", help="2 rounds of 20 batches")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.batches = 2, 20
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    root = Path(args.data_dir)
    data = load_dataset("cifar10", root)
    tv = torchvision_loader(root, data.mean, data.std)
    cfg = TrialConfig(
        arch="simple_cnn", ensemble="batch", ensemble_size=4, device=args.device, robustness=False
    )
    ours, theirs, step = [], [], []
    for r in range(args.rounds):
        ours.append(tensor_loader_s(data, args.batches, device, seed=r))
        theirs.append(torchvision_s(tv, args.batches))
        # a training step of simple_cnn BE4 (loader included, so subtract ours to get the step)
        timed = time_train_steps(cfg, data, steps=args.batches // 2, warmup=2)
        step.append(1.0 / timed["calib_batches_per_s"])
    o, t, s = (statistics.median(v) for v in (ours, theirs, step))
    print(f"device {device}, {args.threads} torch threads, {args.rounds} rounds x {args.batches}")
    print("| path | ms per batch of 128 | images/s |")
    print("| --- | --- | --- |")
    for name, v in (("tensor loader (ours)", o), ("torchvision, 2 workers", t)):
        print(f"| {name} | {v * 1e3:.2f} | {BATCH / v:,.0f} |")
    print(f"| simple_cnn BE4 training step (with loader) | {s * 1e3:.1f} | {BATCH / s:,.0f} |")
    print(
        f"loader speed-up over torchvision: {t / o:.1f}x (target >= 20x); "
        f"loader share of a simple_cnn BE4 step: {o / s:.1%} (target < 5%)"
    )


if __name__ == "__main__":
    main()
