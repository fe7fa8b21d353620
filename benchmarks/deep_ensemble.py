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
from core.runtime import retain_freed_memory

IMPLS = ("grouped", "loop")


def _stepper(model, cfg: TrialConfig, x: torch.Tensor, y: torch.Tensor):
    opt, sched = build_optimizer(model, cfg, num_train=len(y) * 100, steps_per_epoch=100)

    def step() -> None:
        train_step(model, opt, x, y, cfg, sched)

    return step


def make_deep(arch: str, m: int, impl: str, x, y, device: torch.device):
    """One Adam step of an M-member deep ensemble computed as `impl`."""
    model = build_model(arch, 10, ensemble_size=m, ensemble="deep", deep_impl=impl).to(device)
    return _stepper(model, TrialConfig(arch=arch, ensemble="deep", ensemble_size=m), x, y)


def make_singles(arch: str, m: int, x, y, device: torch.device):
    """One Adam step of each of M separate single networks, one after another."""
    cfg = TrialConfig(arch=arch, ensemble="single", ensemble_size=1)
    steps = [
        _stepper(build_model(arch, 10, ensemble_size=1, ensemble="single").to(device), cfg, x, y)
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
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    retain_freed_memory()  # as a trial does (core.train): no page faults from reallocation
    torch.manual_seed(0)
    device = torch.device(a.device)
    archs = a.arch or (["simple_cnn"] if a.quick else ["simple_cnn", "vgg11"])
    sizes = a.members or ([4] if a.quick else [4, 8])
    rounds = a.rounds or (5 if a.quick else 9)
    print(
        f"device {device}, {a.threads} thread(s), Adam, B = {a.per_member} per member, "
        f"{rounds} interleaved rounds, medians; torch {torch.__version__}"
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
            cases = {"singles": make_singles(arch, m, x, y, device)}
            for impl in IMPLS:
                cases[impl] = make_deep(arch, m, impl, x, y, device)
            times = interleaved(cases, rounds, steps, device)
            ratio = {impl: median_ratio(times[impl], times["singles"]) for impl in IMPLS}
            med = {k: 1000 * statistics.median(v) for k, v in times.items()}
            faster = min(IMPLS, key=ratio.__getitem__)
            auto = resolve_deep_impl("auto", device.type, arch)
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
