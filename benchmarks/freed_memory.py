"""Training steps with glibc's default allocator against `core.runtime.retain_freed_memory`.

By default glibc hands large freed blocks back to the OS, so every training step page-faults
its activations back in; trials (core.train) turn that off. Each round runs two fresh
processes, one per allocator setting, in turn; each times Adam training steps of a single
simple_cnn (M x B examples) and a BatchEnsemble of M members (B per member) and counts the
minor page faults per step. Medians over rounds; the last line is the step-time ratio.

    python benchmarks/freed_memory.py              # 5 rounds
    python benchmarks/freed_memory.py --quick      # 2 rounds, fewer steps
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

MODES = ("default", "retained")


def child(mode: str, arch: str, m: int, per_member: int, steps: int, threads: int) -> None:
    """Time `steps` training steps of the single network and the BatchEnsemble; print JSON."""
    import torch

    from core.config import TrialConfig
    from core.models import build_model
    from core.optim import build_optimizer, train_step
    from core.runtime import retain_freed_memory

    torch.set_num_threads(threads)
    if mode == "retained" and not retain_freed_memory():
        raise SystemExit("retain_freed_memory() had no effect here (not glibc)")
    torch.manual_seed(0)
    out = {}
    for ensemble, size, batch in (("single", 1, m * per_member), ("batch", m, per_member)):
        model = build_model(arch, 10, ensemble_size=size, ensemble=ensemble)
        cfg = TrialConfig(arch=arch, ensemble=ensemble, ensemble_size=size)
        opt, sched = build_optimizer(model, cfg, num_train=batch * 100, steps_per_epoch=100)
        x = torch.randn(batch, 3, 32, 32)
        y = torch.randint(0, 10, (batch,))
        for _ in range(3):  # warm-up
            train_step(model, opt, x, y, cfg, sched)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        for _ in range(steps):
            train_step(model, opt, x, y, cfg, sched)
        seconds = (time.perf_counter() - t0) / steps
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
        out[ensemble] = {"ms": 1000 * seconds, "faults": faults}
    print(json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 rounds of 8 steps")
    p.add_argument("--rounds", type=int, default=None, help="default 5")
    p.add_argument("--steps", type=int, default=None, help="steps per model and process")
    p.add_argument("--arch", default="simple_cnn")
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--per-member", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", choices=MODES, default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    steps = a.steps or (8 if a.quick else 20)
    if a.child:
        child(a.child, a.arch, a.members, a.per_member, steps, a.threads)
        return
    rounds = a.rounds or (2 if a.quick else 5)
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode in MODES:
            cmd = [sys.executable, __file__, "--child", mode, "--arch", a.arch]
            cmd += ["--members", str(a.members), "--per-member", str(a.per_member)]
            cmd += ["--steps", str(steps), "--threads", str(a.threads)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs[mode].append(json.loads(res.stdout.strip().splitlines()[-1]))
    print(
        f"{a.arch}, M = {a.members}, B = {a.per_member} per member, {a.threads} thread(s), "
        f"Adam, {rounds} rounds of {steps} steps, medians"
    )
    print(f"{'model':14s} {'allocator':10s} {'ms/step':>8s} {'faults/step':>12s}")
    ratios = {}
    for model, label in (("single", "single"), ("batch", f"BE{a.members}")):
        med = {}
        for mode in MODES:
            ms = statistics.median(r[model]["ms"] for r in runs[mode])
            faults = statistics.median(r[model]["faults"] for r in runs[mode])
            med[mode] = ms
            print(f"{label:14s} {mode:10s} {ms:8.1f} {faults:12.0f}")
        ratios[label] = med["default"] / med["retained"]
    print(
        "step time, default allocator / retained: "
        + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
    )


if __name__ == "__main__":
    main()
