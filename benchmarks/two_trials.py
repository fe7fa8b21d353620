"""Two trials per 2-core node, as studies run here: images/s per trial, fp32 against `auto`.

Issue 21, deliverable 6. Each trial is a fresh process running the trial's training loop
(`core.train.time_train_steps`: loader, augmentation, step) with one thread, as a study's
1-CPU trials do. For each model and precision the trial runs alone and then as two identical
trials started together; rounds interleave the cases, and each figure is the median over
rounds. What matters is the last column: does `auto` keep its gain over fp32 when the node's
two cores are both busy (shared caches, memory bandwidth, the cores' bf16 units)?

    python benchmarks/two_trials.py                           # simple_cnn, single and BE4
    python benchmarks/two_trials.py --arch vgg11 --steps 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

MODELS = {"single": ("single", 1), "BE4": ("batch", 4)}
PRECISION = {
    "fp32": {"precision": "fp32", "channels_last": "off", "compile": "off"},
    "auto": {"precision": "auto", "channels_last": "auto", "compile": "auto"},
}


def child(arch: str, model: str, precision: str, steps: int) -> None:
    """One trial's training loop on synthetic images; prints its images/s and runtime."""
    import torch

    from core import columns as C
    from core.config import TrialConfig
    from core.data import DataBundle
    from core.runtime import resolve_runtime
    from core.train import time_train_steps

    ensemble, size = MODELS[model]
    cfg = TrialConfig(
        arch=arch,
        ensemble=ensemble,
        ensemble_size=size,
        num_threads=1,
        device="cpu",
        robustness=False,
        dataset="cifar10",
        **PRECISION[precision],
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2048, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(2048) % 10
    data = DataBundle(x, y, x[:256], y[:256], name="cifar10")
    r = time_train_steps(cfg, data, steps=steps, warmup=2)
    runtime = resolve_runtime(cfg, torch.device("cpu"))
    print(json.dumps({"images_per_s": r[C.CALIB_IMAGES_PER_S], "runtime": runtime.describe()}))


def trials(arch: str, model: str, precision: str, steps: int, n: int) -> list[dict]:
    """`n` identical trials started together; each one's result."""
    cmd = [sys.executable, __file__, "--child", arch, model, precision, str(steps)]
    root = Path(__file__).resolve().parent.parent
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=root) for _ in range(n)]
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a trial process failed (exit {p.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        arch, model, precision, steps = sys.argv[2:6]
        return child(arch, model, precision, int(steps))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="simple_cnn")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=20, help="timed steps of 128 images per trial")
    a = p.parse_args()
    ips: dict[tuple[str, str, int], list[float]] = {}
    line = ""
    for _ in range(a.rounds):
        for model in MODELS:
            for precision in PRECISION:
                for n in (1, 2):
                    results = trials(a.arch, model, precision, a.steps, n)
                    ips.setdefault((model, precision, n), []).append(
                        statistics.mean(r["images_per_s"] for r in results)
                    )
                    if precision == "auto":
                        line = results[0]["runtime"]
    print(f"{a.arch}, 1 thread per trial, {a.rounds} rounds x {a.steps} steps, medians; {line}")
    print("| model | trials at once | fp32 images/s a trial | auto images/s a trial | auto/fp32 |")
    print("| --- | --- | --- | --- | --- |")
    for model in MODELS:
        for n in (1, 2):
            f = statistics.median(ips[(model, "fp32", n)])
            b = statistics.median(ips[(model, "auto", n)])
            print(f"| {model} | {n} | {f:,.0f} | {b:,.0f} | {b / f:.2f}x |")


if __name__ == "__main__":
    main()
