"""The optimizer step alone: torch's per-tensor loop, foreach and fused, on a model's parameters.

core.optim builds Adam and SGD with ``fused=True``. This times `optimizer.step()` (gradients
fixed, random) for the single network and the BatchEnsemble of M members, whose fast weights
and per-member norms are many more, smaller tensors; the three implementations are
interleaved round by round, medians over rounds. The last line is loop / fused.

    python benchmarks/optimizer_step.py
    python benchmarks/optimizer_step.py --arch vgg11 --optimizer sgd
"""

from __future__ import annotations

import argparse
import statistics

import torch
from timing import interleaved

from core.config import TrialConfig
from core.models import build_model
from core.optim import param_groups

KINDS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def make(arch: str, ensemble: str, m: int, optimizer: str, kind: str):
    model = build_model(arch, 10, ensemble_size=m, ensemble=ensemble)
    cfg = TrialConfig(arch=arch, ensemble=ensemble, ensemble_size=m, optimizer=optimizer)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    groups = param_groups(model, cfg)
    if optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, **KINDS[kind])
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, **KINDS[kind])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="simple_cnn")
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--steps", type=int, default=50, help="steps per case and round")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(
        f"{a.arch}, {a.optimizer}, {a.threads} thread(s), {a.rounds} interleaved rounds of "
        f"{a.steps} steps, medians; torch {torch.__version__}"
    )
    print(f"{'model':10s} {'tensors':>8s} " + " ".join(f"{k + ' us':>10s}" for k in KINDS))
    headline = []
    for ensemble, m in (("single", 1), ("batch", a.members)):
        opts = {k: make(a.arch, ensemble, m, a.optimizer, k) for k in KINDS}
        # one untimed step each creates the optimizer's state
        times = interleaved({k: o.step for k, o in opts.items()}, a.rounds, a.steps, warmup=1)
        med = {k: 1e6 * statistics.median(v) for k, v in times.items()}
        n = sum(len(g["params"]) for g in opts["fused"].param_groups)
        label = "single" if ensemble == "single" else f"BE{m}"
        print(f"{label:10s} {n:8d} " + " ".join(f"{med[k]:10.0f}" for k in KINDS))
        headline.append(f"{label} {med['loop'] / med['fused']:.1f}x")
    print("optimizer step, loop / fused: " + ", ".join(headline))


if __name__ == "__main__":
    main()
