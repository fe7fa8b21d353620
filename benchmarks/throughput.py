"""Training-step throughput of ensembles and sharing regimes, as ratios measured in one run.

Checks two claims: a `deep` ensemble computed together (grouped convs) beats a Python loop
over M separate networks, and ensemble sharing of the early region (computed once on the
untiled batch) trains faster than no sharing. Also times Packed-Ensembles (alpha = 2, gamma =
1: about one network's FLOPs, as grouped convolutions) against the single network, with each
model's training FLOPs per image (`core.cost`), so that time and FLOPs can be read together.
MIMO is timed against the single network in interleaved rounds (medians of steps/s): at b = 1
a step trains the batch's B rows, at b = 4 (its default) the trainer's batch is B / 4 images
repeated into B rows, so both compare to one network's step on B rows.

    python benchmarks/throughput.py --arch simple_cnn --members 4 --steps 20
"""

import argparse
import statistics
import time

import torch
from torch import nn

from core.config import TrialConfig
from core.cost import config_flops_per_image
from core.models import build_model, count_parameters
from core.optim import build_optimizer, train_step
from core.runtime import retain_freed_memory


def steps_per_s(
    model: nn.Module, cfg: TrialConfig, x: torch.Tensor, y: torch.Tensor, steps: int
) -> float:
    opt, sched = build_optimizer(model, cfg, num_train=len(y) * steps, steps_per_epoch=steps)
    for _ in range(2):  # warm-up
        train_step(model, opt, x, y, cfg, sched)
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(model, opt, x, y, cfg, sched)
    return steps / (time.perf_counter() - t0)


class Loop(nn.Module):
    """M independent single networks run one after another: the baseline `deep` replaces."""

    def __init__(self, arch: str, members: int) -> None:
        super().__init__()
        self.members = nn.ModuleList(
            build_model(arch, 10, ensemble_size=1, ensemble="single") for _ in range(members)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x) for m in self.members])  # (M, B, K)


def interleaved_medians(cases: dict, steps: int, rounds: int) -> dict[str, float]:
    """Median steps/s of each case over `rounds` rounds, the cases taking turns in each round
    (a busy machine slows all of them alike); a case is (model, cfg, x, y)."""
    runs = {}
    for name, (model, cfg, x, y) in cases.items():
        opt, sched = build_optimizer(model, cfg, num_train=len(y) * steps, steps_per_epoch=steps)
        for _ in range(2):  # warm-up
            train_step(model, opt, x, y, cfg, sched)
        runs[name] = (model, cfg, x, y, opt, sched)
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (model, cfg, x, y, opt, sched) in runs.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                train_step(model, opt, x, y, cfg, sched)
            rates[name].append(steps / (time.perf_counter() - t0))
    return {name: statistics.median(r) for name, r in rates.items()}


def mimo_vs_single(arch: str, m: int, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """MIMO's step against one network's, on the same rows per step (see the docstring)."""
    b4 = len(y) // 4
    kinds = {
        "single": (dict(ensemble="single", ensemble_size=1), x, y),
        "mimo b=1": (dict(ensemble="mimo", ensemble_size=m, mimo_batch_repeat=1), x, y),
        "mimo b=4": (dict(ensemble="mimo", ensemble_size=m), x[:b4], y[:b4]),
    }
    cases = {}
    for name, (kw, xs, ys) in kinds.items():
        cfg = TrialConfig(arch=arch, **kw)
        cases[name] = (build_model(arch, 10, **kw), cfg, xs, ys)
        mflops = config_flops_per_image(cfg, 10) / 1e6
        print(f"  {name:18s} {len(ys):4d} images/step  {mflops:7.1f} MFLOPs/image")
    med = interleaved_medians(cases, steps, rounds=5)
    for name, rate in med.items():
        print(f"  {name:18s} {rate:7.2f} steps/s (median of 5 interleaved rounds)")
    print(f"ratio single / mimo b=1 (time per step):  {med['single'] / med['mimo b=1']:.2f}")
    print(f"ratio single / mimo b=4 (time per step):  {med['single'] / med['mimo b=4']:.2f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="simple_cnn")
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    retain_freed_memory()  # as a trial does (core.train): no page faults from reallocation
    torch.manual_seed(0)
    x, y = torch.randn(a.batch_size, 3, 32, 32), torch.randint(0, 10, (a.batch_size,))
    m = a.members
    cases = {
        "single": dict(ensemble="single", ensemble_size=1),
        "deep (grouped)": dict(ensemble="deep", ensemble_size=m),
        "packed a=2 g=1": dict(ensemble="packed", ensemble_size=m),
        "packed a=2 g=2": dict(ensemble="packed", ensemble_size=m, packed_groups=2),
        "batch none/none": dict(ensemble="batch", ensemble_size=m),
        "batch none/early": dict(ensemble="batch", ensemble_size=m, sharing_ensemble="early"),
        "batch all/none": dict(ensemble="batch", ensemble_size=m, sharing_network="all"),
        "batch none/all": dict(ensemble="batch", ensemble_size=m, sharing_ensemble="all"),
    }
    rate, params = {}, {}
    print(f"{a.arch}, M={m}, batch {a.batch_size}, {a.threads} thread(s), {a.steps} steps")
    for name, kw in cases.items():
        cfg = TrialConfig(arch=a.arch, **kw)
        model = build_model(a.arch, 10, **kw)
        rate[name], params[name] = steps_per_s(model, cfg, x, y, a.steps), count_parameters(model)
        mflops = config_flops_per_image(cfg, 10) / 1e6
        print(
            f"  {name:18s} {rate[name]:7.2f} steps/s  {params[name]:>11,d} params  "
            f"{mflops:7.1f} MFLOPs/image"
        )
    loop_cfg = TrialConfig(arch=a.arch, ensemble="deep", ensemble_size=m)
    rate["deep (loop)"] = steps_per_s(Loop(a.arch, m), loop_cfg, x, y, a.steps)
    print(f"  {'deep (loop)':18s} {rate['deep (loop)']:7.2f} steps/s")
    print(
        f"ratio deep grouped / loop:            {rate['deep (grouped)'] / rate['deep (loop)']:.2f}"
    )
    print(
        f"ratio batch early-shared / none:      "
        f"{rate['batch none/early'] / rate['batch none/none']:.2f}"
    )
    print(f"ratio batch / single (cost of M={m}):  {rate['single'] / rate['batch none/none']:.2f}")
    print(f"ratio single / packed a=2 g=1 (time): {rate['single'] / rate['packed a=2 g=1']:.2f}")
    mimo_vs_single(a.arch, m, x, y, a.steps)


if __name__ == "__main__":
    main()
