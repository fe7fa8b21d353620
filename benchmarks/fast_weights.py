"""The price of BatchEnsemble's fast weights: step(BE, M) / step(single, M x B).

The single network gets M x B examples, so it does the same convolution work as the
BatchEnsemble with B examples per member; the ratio is what the fast weights (and the ensemble
norm) cost on top. Target (issue "Training cost at the limit"): <= 1.05 for vgg11 and <= 1.10
for simple_cnn, at M = 4 and 8. The BatchEnsemble is measured twice in the same run, with the
fused conv-norm-ReLU (`core.layers.be_conv_norm_relu`, the default) and with it switched off
(the unfused layers), so that before and after come from one run.

Cases are interleaved round by round and each ratio is the median over rounds.

    python benchmarks/fast_weights.py                  # vgg11 and simple_cnn, M = 4 and 8
    python benchmarks/fast_weights.py --quick          # simple_cnn, M = 4, fewer rounds
    python benchmarks/fast_weights.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics

import torch
from timing import interleaved, median_ratio

from core.config import TrialConfig
from core.models import build_model
from core.optim import build_optimizer, train_step
from core.runtime import retain_freed_memory


def make_step(arch: str, ensemble: str, m: int, batch: int, device: torch.device, fused: bool):
    """A closure running one Adam training step of the model on a fixed batch."""
    size = 1 if ensemble == "single" else m
    model = build_model(arch, 10, ensemble_size=size, ensemble=ensemble, fuse=fused).to(device)
    cfg = TrialConfig(arch=arch, ensemble=ensemble, ensemble_size=size)
    opt, sched = build_optimizer(model, cfg, num_train=batch * 100, steps_per_epoch=100)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        train_step(model, opt, x, y, cfg, sched)

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="simple_cnn, M = 4, 5 rounds")
    p.add_argument("--per-member", type=int, default=32, help="examples per member (B)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 9)")
    p.add_argument("--steps", type=int, default=None, help="steps per case and round")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    retain_freed_memory()  # as a trial does (core.train): no page faults from reallocation
    torch.manual_seed(0)
    device = torch.device(a.device)
    archs = ["simple_cnn"] if a.quick else ["simple_cnn", "vgg11"]
    sizes = [4] if a.quick else [4, 8]
    rounds = a.rounds or (5 if a.quick else 9)
    print(
        f"device {device}, {a.threads} thread(s), Adam, B = {a.per_member} per member, "
        f"{rounds} interleaved rounds, medians; torch {torch.__version__}"
    )
    print(
        f"{'model':18s} {'single ms':>10s} {'BE ms':>8s} {'unfused ms':>11s} "
        f"{'price':>6s} {'unfused':>8s}"
    )
    worst = {}
    for arch in archs:
        steps = a.steps or (8 if arch == "simple_cnn" else 2)
        for m in sizes:
            cases = {
                "single": make_step(arch, "single", m, m * a.per_member, device, True),
                "be": make_step(arch, "batch", m, a.per_member, device, True),
                "unfused": make_step(arch, "batch", m, a.per_member, device, False),
            }
            times = interleaved(cases, rounds, steps, device)
            ratio = median_ratio(times["be"], times["single"])
            before = median_ratio(times["unfused"], times["single"])
            med = {k: 1000 * statistics.median(v) for k, v in times.items()}
            print(
                f"{arch + f', M = {m}':18s} {med['single']:10.1f} {med['be']:8.1f} "
                f"{med['unfused']:11.1f} {ratio:6.2f} {before:8.2f}"
            )
            worst[arch] = max(worst.get(arch, 0.0), ratio)
    targets = {"simple_cnn": 1.10, "vgg11": 1.05}
    print(
        "fast-weight price, worst over M: "
        + ", ".join(f"{k} {v:.2f} (target <= {targets[k]:.2f})" for k, v in worst.items())
    )


if __name__ == "__main__":
    main()
