"""Deep ensembles against M separate networks: step(deep, M) / step(M singles).

A deep ensemble of M members (`ensemble="deep"`) is timed in each of its computations over the
one parameter layout (`deep_impl`: `grouped`, one grouped convolution per layer, and `loop`,
M ordinary convolutions per layer on a member list), against the baseline it replaces: M
independent single networks, each with its own Adam, stepped one after another on the same B
examples (every deep member sees the same B examples too). Target (issue "Training cost at the
limit", target 2): step(deep, the computation `deep_impl='auto'` picks) <= step(M singles) on
every device, for simple_cnn and vgg11 at M = 4 and 8.

Cases are interleaved round by round; each ratio is the median over rounds of the ratio within
one round, so that a load that changes during the run shifts both sides of a ratio alike.

    python benchmarks/deep_ensemble.py                  # simple_cnn and vgg11, M = 4 and 8
    python benchmarks/deep_ensemble.py --quick          # simple_cnn, M = 4, fewer rounds
    python benchmarks/deep_ensemble.py --device cuda
    python benchmarks/deep_ensemble.py --arch vgg11 --members 4 --rounds 3 --steps 1
    python benchmarks/deep_ensemble.py --precision auto --threads 1   # as an `auto` trial

`--precision auto` computes every case as a trial that leaves precision and channels_last to
`auto` does on the device (bf16 autocast in channels_last on a CPU with bf16 units), and the
`auto` column is then what `deep_impl='auto'` picks for that precision (core.network).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from timing import interleaved, median_ratio

from core.config import TrialConfig
from core.models import build_model
from core.network import resolve_deep_impl
from core.optim import build_optimizer, train_step
from core.runtime import prepare_model, resolve_runtime, retain_freed_memory, unwrap

IMPLS = ("grouped", "loop")
# --precision: what each case's TrialConfig leaves to the runtime (compile stays off: the
# computation of the trunk, not the compiler, is what deep_impl chooses between)
PRECISION = {
    "fp32": {"precision": "fp32", "channels_last": "off", "compile": "off"},
    "auto": {"precision": "auto", "channels_last": "auto", "compile": "off"},
}


def _stepper(model, cfg: TrialConfig, x: torch.Tensor, y: torch.Tensor):
    """One Adam step of `model` on (x, y), computed as a trial with cfg's runtime fields."""
    runtime = resolve_runtime(cfg, x.device)
    model = prepare_model(model.to(x.device), runtime)
    opt, sched = build_optimizer(unwrap(model), cfg, num_train=len(y) * 100, steps_per_epoch=100)
    x = runtime.batch(x)

    def step() -> None:
        train_step(model, opt, x, y, cfg, sched, runtime.autocast)

    step.runtime = runtime  # type: ignore[attr-defined]
    return step


def make_deep(arch: str, m: int, impl: str, x, y, precision: str = "fp32"):
    """One Adam step of an M-member deep ensemble computed as `impl`."""
    model = build_model(arch, 10, ensemble_size=m, ensemble="deep", deep_impl=impl)
    cfg = TrialConfig(arch=arch, ensemble="deep", ensemble_size=m, **PRECISION[precision])
    return _stepper(model, cfg, x, y)


def make_singles(arch: str, m: int, x, y, precision: str = "fp32"):
    """One Adam step of each of M separate single networks, one after another."""
    cfg = TrialConfig(arch=arch, ensemble="single", ensemble_size=1, **PRECISION[precision])
    steps = [
        _stepper(build_model(arch, 10, ensemble_size=1, ensemble="single"), cfg, x, y)
        for _ in range(m)
    ]

    def step() -> None:
        for s in steps:
            s()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="simple_cnn, M = 4, 5 rounds")
    p.add_argument("--per-member", type=int, default=32, help="examples per member (B)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 9)")
    p.add_argument("--steps", type=int, default=None, help="steps per case and round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--arch", nargs="+", default=None, help="default: simple_cnn vgg11")
    p.add_argument("--members", nargs="+", type=int, default=None, help="default: 4 8")
    p.add_argument("--precision", choices=tuple(PRECISION), default="fp32")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    retain_freed_memory()  # as a trial does (core.train): no page faults from reallocation
    torch.manual_seed(0)
    device = torch.device(a.device)
    archs = a.arch or (["simple_cnn"] if a.quick else ["simple_cnn", "vgg11"])
    sizes = a.members or ([4] if a.quick else [4, 8])
    rounds = a.rounds or (5 if a.quick else 9)
    runtime = resolve_runtime(TrialConfig(**PRECISION[a.precision]), device)
    print(
        f"device {device}, {a.threads} thread(s), Adam, B = {a.per_member} per member, "
        f"{rounds} interleaved rounds, medians; torch {torch.__version__}; "
        f"{runtime.describe()}"
    )
    print(
        f"{'model':18s} {'singles ms':>11s} {'grouped ms':>11s} {'loop ms':>8s} "
        f"{'grouped/s':>10s} {'loop/s':>7s} {'faster':>8s} {'auto':>8s}"
    )
    headline = {}
    for arch in archs:
        steps = a.steps or (8 if arch == "simple_cnn" else 2)
        x = torch.randn(a.per_member, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (a.per_member,), device=device)
        for m in sizes:
            cases = {"singles": make_singles(arch, m, x, y, a.precision)}
            for impl in IMPLS:
                cases[impl] = make_deep(arch, m, impl, x, y, a.precision)
            precision = cases["grouped"].runtime.precision
            times = interleaved(cases, rounds, steps, device)
            ratio = {impl: median_ratio(times[impl], times["singles"]) for impl in IMPLS}
            med = {k: 1000 * statistics.median(v) for k, v in times.items()}
            faster = min(IMPLS, key=ratio.__getitem__)
            auto = resolve_deep_impl("auto", device.type, arch, precision)
            print(
                f"{arch + f', M = {m}':18s} {med['singles']:11.1f} {med['grouped']:11.1f} "
                f"{med['loop']:8.1f} {ratio['grouped']:10.2f} {ratio['loop']:7.2f} "
                f"{faster:>8s} {auto:>8s}"
            )
            headline[f"{arch} M={m}"] = ratio[auto]
    print(
        f"step(deep, auto) / step(M singles) on {device.type} (target <= 1.00): "
        + ", ".join(f"{k} {v:.2f}" for k, v in headline.items())
        + f"; worst {max(headline.values()):.2f}"
    )


if __name__ == "__main__":
    main()
