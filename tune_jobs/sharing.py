"""Parameter sharing: within the network x within the ensemble, each none/early/deep/all.

Only the combinations valid for the architecture are run (core.sharing decides). The default
arch is `vgg11_share`, VGG11 plus one 256->256 conv so that the early region has a tie pair,
as the student study did (plain `vgg11` has none: `--set arch=vgg11` runs its 8 valid pairs);
8 members,
alpha = gamma = 0.5, Adam, 10 epochs, batches/s recorded. `--dataset cifar20` repeats it on
CIFAR-100's 20 coarse labels with gradient clipping and early stopping (patience 5), as the
student study did.

    python tune_jobs/sharing.py --smoke --data-dir ../shared/data/cifar10
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.columns import CALIB_COLUMNS, RESULTS_FILE
from core.config import TrialConfig, valid_sharing_regimes
from tune_jobs.cli import cli
from tune_jobs.options import JobOptions
from tune_jobs.study import Study, grid, grid_configs, with_seeds

if TYPE_CHECKING:
    import pandas as pd

CIFAR20 = {"grad_clip": 1.0, "patience": 5, "val_fraction": 0.1}
# Smoke: one regime of each kind (neither, network only, ensemble only, both).
SMOKE_REGIMES = {("none", "none"), ("early", "none"), ("none", "early"), ("all", "all")}
# CPU preset: none, early and deep on each axis, so that early and deep sharing are compared
# within the network, within the ensemble and both (all, which is early plus deep, left out).
CPU_REGIMES = {(n, e) for n in ("none", "early", "deep") for e in ("none", "early", "deep")}
REGIMES = {"smoke": SMOKE_REGIMES, "cpu": CPU_REGIMES, "learn": CPU_REGIMES}
# CPU preset: 4 members (8 take ~60 s per epoch of 4,500 images on a busy 2-core machine: 27
# trials would take well over 45 minutes). Learn preset: 4 as well (27 trials of 20 epochs
# ~3.7 h at most; 8 would take ~8 h), so that the two scales compare like with like.
CPU_MEMBERS = 4
SMALL_MEMBERS = {"cpu": CPU_MEMBERS, "learn": CPU_MEMBERS}
# Throughput timed alone, after every trial finished: warm-up steps, then timed steps per regime.
CALIB_WARMUP, CALIB_STEPS = 3, 20
REGIME_KEYS = ("sharing_network", "sharing_ensemble")


def regimes(arch: str, preset: str = "full") -> list[dict[str, str]]:
    keep = REGIMES.get(preset)
    return [
        {"sharing_network": n, "sharing_ensemble": e}
        for n, e in valid_sharing_regimes(arch, "batch")
        if keep is None or (n, e) in keep
    ]


def make_study(opts: JobOptions) -> Study:
    space = opts.fixed_config(
        arch="vgg11_share",
        ensemble="batch",
        ensemble_size=SMALL_MEMBERS.get(opts.preset, 8),
        alpha=0.5,
        gamma=0.5,
        optimizer="adam",
        lr=1e-3,
        epochs=10,
    )
    if opts.dataset == "cifar20":
        space |= CIFAR20
    space["sharing"] = grid(regimes(space["arch"], opts.preset))
    space = with_seeds(space, opts.seeds)

    def after(exp_dir: Path, results: pd.DataFrame, run_alone: Callable[..., Any]) -> None:
        calibrate(exp_dir, results, space, run_alone)

    info = {
        "throughput": f"timed alone: after every trial finished, each regime's training loop "
        f"({CALIB_WARMUP} warm-up + {CALIB_STEPS} timed steps, seed 0) with a trial's "
        "resources (a Ray task; on a local CPU, the driver with a trial's threads), one regime "
        "after another"
    }
    return Study("sharing", space, after=after, info=info)


def calibrate(
    exp_dir: Path,
    results: pd.DataFrame,
    space: dict,
    run_alone: Callable[..., Any] | None = None,
    keys: tuple[str, ...] = REGIME_KEYS,
    steps: tuple[int, int] = (CALIB_WARMUP, CALIB_STEPS),
) -> pd.DataFrame:
    """Time each regime's training steps alone and add CALIB_COLUMNS to results.parquet.

    A trial's own batches/s shares the node with whatever else runs there (measured 0.73 vs
    1.87 batches/s for one config): the runner calls this after the Tuner returned, so nothing
    else of the study runs; regimes are timed one after another, each with a trial's
    resources (`run_alone`, the runner's: `tune_jobs.alone.run_alone_with`; None: in this
    process), and every trial of a
    regime gets its regime's values. A regime is a value of the config fields `keys` (the
    methods study: the fields that change what a step computes); `steps`: (warm-up, timed)."""
    from core.data import load_dataset
    from core.train import time_train_steps

    regimes_cfg: dict[tuple, TrialConfig] = {}
    for cfg in grid_configs(space):
        cfg = TrialConfig.from_dict({**cfg, "seed": 0})
        regimes_cfg.setdefault(tuple(getattr(cfg, k) for k in keys), cfg)
    data = None
    timed: dict[tuple, dict[str, float]] = {}
    t0 = time.perf_counter()
    for key, cfg in regimes_cfg.items():
        if data is None:
            data = load_dataset(cfg.dataset, cfg.data_dir)  # split by each regime's call
        args = (cfg, data, steps[1], steps[0])
        timed[key] = run_alone(time_train_steps, *args) if run_alone else time_train_steps(*args)
    rows = list(zip(*(results[k] for k in keys), strict=True))
    for col in CALIB_COLUMNS:
        results[col] = [timed.get(k, {}).get(col, float("nan")) for k in rows]
    results.to_parquet(exp_dir / RESULTS_FILE, index=False)
    print(
        f"throughput timed alone: {len(timed)} regime(s) in {time.perf_counter() - t0:.0f} s "
        f"({steps[1]} steps each), written to {exp_dir / RESULTS_FILE}",
        flush=True,
    )
    return results


if __name__ == "__main__":
    cli(make_study, doc=__doc__)
