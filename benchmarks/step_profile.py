"""Where a CPU training step's time goes, against this machine's measured bf16 peak.

Issue 21, deliverable 3. First the peak: a large bf16 matrix product (4096 x 4096 x 4096 under
bf16 autocast, as oneDNN runs it) on 1 and on 2 threads, the median of 5. Then, for each model,
one trial's training step computed as `auto` computes it on this CPU (core.runtime), with the
training FLOPs per image of core.cost: the step's time, its FLOP/s, its fraction of the peak on
the same threads, and torch.profiler's self CPU time grouped into convolution (forward and
backward), matmul, normalisation, elementwise (activation, fast weights, casts), pooling,
layout copies, the optimizer step and the rest, the median step's share of each.

    python benchmarks/step_profile.py                       # simple_cnn and vgg11, single and BE4
    python benchmarks/step_profile.py --arch vgg11 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from core.config import TrialConfig
from core.cost import train_flops_per_image
from core.models import build_model
from core.optim import build_optimizer, train_step
from core.runtime import prepare_model, resolve_runtime, retain_freed_memory, unwrap

MODELS = {"single": ("single", 1), "BE4": ("batch", 4)}
# profiler op name fragments -> the group it is counted in (first match wins)
GROUPS = (
    ("convolution", ("conv", "mkldnn_convolution")),
    ("matmul", ("addmm", "matmul", "mm", "linear", "bmm")),
    ("norm", ("batch_norm", "var_mean", "vector_norm", "native_batch_norm")),
    ("pooling", ("max_pool", "pool")),
    ("layout copies", ("copy_", "contiguous", "clone", "to_dense", "_to_copy", "cat")),
    ("optimizer", ("adam", "_foreach", "sgd")),  # the fused or foreach optimizer kernels
    ("elementwise", ("mul", "add", "relu", "threshold", "sum", "sub", "div", "where", "lerp")),
)


def bf16_peak(threads: int, n: int = 4096, reps: int = 5) -> float:
    """TFLOP/s of an n x n x n bf16 matrix product on `threads` threads (median of `reps`)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n).bfloat16(), torch.randn(n, n).bfloat16()
    a @ b  # oneDNN's first call picks its kernel
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e12


def make_step(arch: str, model: str, batch: int):
    ensemble, size = MODELS[model]
    cfg = TrialConfig(arch=arch, ensemble=ensemble, ensemble_size=size, compile="off")
    runtime = resolve_runtime(cfg, torch.device("cpu"))
    net = prepare_model(build_model(arch, 10, ensemble_size=size, ensemble=ensemble), runtime)
    opt, sched = build_optimizer(unwrap(net), cfg, num_train=batch * 100, steps_per_epoch=100)
    x = runtime.batch(torch.randn(batch, 3, 32, 32))
    y = torch.randint(0, 10, (batch,))
    flops = train_flops_per_image(unwrap(net), cfg, (3, 32, 32), 10) * batch

    def step() -> None:
        train_step(net, opt, x, y, cfg, sched, runtime.autocast)

    return step, flops, runtime


def group_of(name: str) -> str:
    low = name.lower()
    for group, keys in GROUPS:
        if any(k in low for k in keys):
            return group
    return "rest"


def breakdown(step, steps: int) -> dict[str, float]:
    """Self CPU seconds per step in each group (the profiler's own overhead included)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    out: dict[str, float] = {}
    for e in prof.key_averages():
        g = group_of(e.key)
        out[g] = out.get(g, 0.0) + e.self_cpu_time_total / 1e6 / steps
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", nargs="+", default=["simple_cnn", "vgg11"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=None, help="default 10 (simple_cnn), 3 (vgg11)")
    a = p.parse_args()
    retain_freed_memory()
    peaks = {t: bf16_peak(t) for t in sorted({1, 2, a.threads})}
    print(
        "bf16 matmul peak (4096^3, median of 5): "
        + ", ".join(f"{t} thread(s) {v:.2f} TFLOP/s" for t, v in peaks.items())
    )
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    for arch in a.arch:
        steps = a.steps or (10 if arch == "simple_cnn" else 3)
        for model in MODELS:
            step, flops, runtime = make_step(arch, model, a.batch)
            for _ in range(2):
                step()
            times = []
            for _ in range(steps):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            t = statistics.median(times)
            groups = breakdown(step, max(2, steps // 2))
            total = sum(groups.values())
            tflops = flops / t / 1e12
            print(
                f"\n{arch} {model}, batch {a.batch}, {a.threads} thread(s), {runtime.describe()}: "
                f"step {1000 * t:.1f} ms, {tflops:.3f} TFLOP/s = "
                f"{tflops / peaks[a.threads]:.1%} of the bf16 peak"
            )
            print("| part | ms per step (profiled) | share |")
            print("| --- | --- | --- |")
            for g, v in sorted(groups.items(), key=lambda kv: -kv[1]):
                print(f"| {g} | {1000 * v:.1f} | {v / total:.0%} |")


if __name__ == "__main__":
    main()
