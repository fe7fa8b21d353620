"""What torch.compile costs and buys a CPU trial: compile time cold (empty inductor cache) and
warm (a later trial of the same shapes on the node), and the step time compiled and eager.

Issue 21, deliverable 4. Each measurement is a fresh process, as each trial is: it builds the
model as a trial with `auto` precision does (bf16 + channels_last on a CPU with bf16 units),
times its first training step (which compiles, forward and backward) and then the median of
`--steps` steps. The cold process gets an empty TORCHINDUCTOR_CACHE_DIR; the warm one the
same directory after it, which is what a study's later trials on a node get: inductor's FX
graph and AOTAutograd caches are on by default and keyed by the graph and its shapes, and a
study's trials share the node's cache directory (torch's default, /tmp/torchinductor_$USER).
Break-even: the steps after which compiling has paid for itself.

    python benchmarks/compile_cache.py                 # simple_cnn single and BE4, 2 threads
    python benchmarks/compile_cache.py --arch vgg11 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(arch: str, ensemble: str, m: int, compiled: bool, steps: int, threads: int) -> dict:
    import torch

    from core.config import TrialConfig
    from core.models import build_model
    from core.optim import build_optimizer, train_step
    from core.runtime import prepare_model, resolve_runtime, retain_freed_memory, unwrap

    torch.set_num_threads(threads)
    retain_freed_memory()
    torch.manual_seed(0)
    size = 1 if ensemble == "single" else m
    batch = 32 * m if ensemble == "single" else 32
    cfg = TrialConfig(
        arch=arch, ensemble=ensemble, ensemble_size=size, compile="on" if compiled else "off"
    )
    runtime = resolve_runtime(cfg, torch.device("cpu"))
    model = prepare_model(build_model(arch, 10, ensemble_size=size, ensemble=ensemble), runtime)
    opt, sched = build_optimizer(unwrap(model), cfg, num_train=batch * 100, steps_per_epoch=100)
    x = runtime.batch(torch.randn(batch, 3, 32, 32))
    y = torch.randint(0, 10, (batch,))

    def step() -> float:
        t0 = time.perf_counter()
        train_step(model, opt, x, y, cfg, sched, runtime.autocast)
        return time.perf_counter() - t0

    first = step()
    step()
    times = [step() for _ in range(steps)]
    return {"first_s": first, "step_s": statistics.median(times), "runtime": runtime.describe()}


def run(args: list[str], cache: str) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _steps(cost_s: float, saved_s: float) -> str:
    """The steps after which compiling (cost_s) has paid for itself (saved_s a step)."""
    return f"{cost_s / saved_s:,.0f}" if saved_s > 0 else "never"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="simple_cnn")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--child", nargs=4, metavar=("ENSEMBLE", "M", "COMPILED", "STEPS"))
    a = p.parse_args()
    if a.child:
        ens, m, comp, steps = a.child
        print(json.dumps(child(a.arch, ens, int(m), comp == "1", int(steps), a.threads)))
        return
    print(f"{a.arch}, {a.threads} thread(s), a fresh process per row, median of {a.steps} steps")
    print(
        "| model | eager ms/step | compiled ms/step | compile cold s | compile warm s "
        "| break-even steps cold | warm |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for ens, m in (("single", 4), ("batch", 4)):
        base = ["--arch", a.arch, "--threads", str(a.threads)]
        with tempfile.TemporaryDirectory() as cache:
            eager = run([ens, str(m), "0", str(a.steps), *base], cache)
            cold = run([ens, str(m), "1", str(a.steps), *base], cache)
            warm = run([ens, str(m), "1", str(a.steps), *base], cache)
        saved = eager["step_s"] - cold["step_s"]
        cold_c = cold["first_s"] - eager["first_s"]
        warm_c = warm["first_s"] - eager["first_s"]
        name = "single" if ens == "single" else f"BE{m}"
        print(
            f"| {name} | {1000 * eager['step_s']:.1f} | {1000 * cold['step_s']:.1f} "
            f"| {cold_c:.1f} | {warm_c:.1f} | {_steps(cold_c, saved)} | {_steps(warm_c, saved)} |"
        )
    print(eager["runtime"])


if __name__ == "__main__":
    main()
