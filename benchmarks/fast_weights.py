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
    python benchmarks/fast_weights.py --precision both --threads 1   # fp32 against auto

With `--precision auto` every case computes as a trial with precision, channels_last and
compile left to `auto` does on the device (on a CPU with AMX or AVX512-BF16: bf16 autocast in
channels_last; core.runtime); `--precision both` times the fp32 and the auto cases in one
interleaved run (single and fused BatchEnsemble each), and prints what auto buys each.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from timing import interleaved, median_ratio

from core.config import TrialConfig
from core.models import build_model
from core.optim import build_optimizer, train_step
from core.runtime import prepare_model, resolve_runtime, retain_freed_memory, unwrap

# --precision: what each case's TrialConfig leaves to the runtime
PRECISION = {
    "fp32": {"precision": "fp32", "channels_last": "off", "compile": "off"},
    "auto": {"precision": "auto", "channels_last": "auto", "compile": "auto"},
}


def make_step(
    arch: str,
    ensemble: str,
    m: int,
    batch: int,
    device: torch.device,
    fused: bool,
    precision: str = "fp32",
):
    """A closure running one Adam training step of the model on a fixed batch, computed as a
    trial with `PRECISION[precision]` computes on `device`."""
    size = 1 if ensemble == "single" else m
    model = build_model(arch, 10, ensemble_size=size, ensemble=ensemble, fuse=fused).to(device)
    cfg = TrialConfig(arch=arch, ensemble=ensemble, ensemble_size=size, **PRECISION[precision])
    runtime = resolve_runtime(cfg, device)
    model = prepare_model(model, runtime)
    opt, sched = build_optimizer(unwrap(model), cfg, num_train=batch * 100, steps_per_epoch=100)
    x = runtime.batch(torch.randn(batch, 3, 32, 32, device=device))
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        train_step(model, opt, x, y, cfg, sched, runtime.autocast)

    step.runtime = runtime  # type: ignore[attr-defined]
    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="simple_cnn, M = 4, 5 rounds")
    p.add_argument("--per-member", type=int, default=32, help="examples per member (B)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 9)")
    p.add_argument("--steps", type=int, default=None, help="steps per case and round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=("fp32", "auto", "both"), default="fp32")
    a = p.parse_args()
    if a.precision == "both":
        return compare_precisions(a)
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
            pr = a.precision
            cases = {
                "single": make_step(arch, "single", m, m * a.per_member, device, True, pr),
                "be": make_step(arch, "batch", m, a.per_member, device, True, pr),
                "unfused": make_step(arch, "batch", m, a.per_member, device, False, pr),
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


def compare_precisions(a: argparse.Namespace) -> None:
    """fp32 against auto in one interleaved run: each one's fast-weight price, and what auto
    buys the single network and the BatchEnsemble (images/s of auto over fp32)."""
    torch.set_num_threads(a.threads)
    retain_freed_memory()
    torch.manual_seed(0)
    device = torch.device(a.device)
    archs = ["simple_cnn"] if a.quick else ["simple_cnn", "vgg11"]
    sizes = [4] if a.quick else [4, 8]
    rounds = a.rounds or (5 if a.quick else 9)
    auto = make_step("simple_cnn", "single", 1, 8, device, True, "auto").runtime
    print(
        f"device {device}, {a.threads} thread(s), Adam, B = {a.per_member} per member, "
        f"{rounds} interleaved rounds, medians; torch {torch.__version__}; "
        f"auto = {auto.describe()}"
    )
    print(
        "| model | single fp32 ms | BE fp32 ms | single auto ms | BE auto ms | price fp32 "
        "| price auto | single auto/fp32 | BE auto/fp32 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for arch in archs:
        steps = a.steps or (8 if arch == "simple_cnn" else 2)
        for m in sizes:
            cases = {
                (kind, pr): make_step(
                    arch, kind, m, a.per_member * (m if kind == "single" else 1), device, True, pr
                )
                for pr in ("fp32", "auto")
                for kind in ("single", "batch")
            }
            times = interleaved(
                {f"{k}-{p}": v for (k, p), v in cases.items()}, rounds, steps, device
            )
            med = {k: 1000 * statistics.median(v) for k, v in times.items()}
            price = {p: median_ratio(times[f"batch-{p}"], times[f"single-{p}"]) for p in PRECISION}
            gain = {
                k: median_ratio(times[f"{k}-fp32"], times[f"{k}-auto"]) for k in ("single", "batch")
            }
            print(
                f"| {arch}, M = {m} | {med['single-fp32']:.1f} | {med['batch-fp32']:.1f} "
                f"| {med['single-auto']:.1f} | {med['batch-auto']:.1f} | {price['fp32']:.2f} "
                f"| {price['auto']:.2f} | {gain['single']:.2f}x | {gain['batch']:.2f}x |"
            )
    print("targets (issue 21): price auto <= 1.10; BE4 auto/fp32 >= 2x")


if __name__ == "__main__":
    main()
