"""Fabricated study outputs following docs/results_schema.md (results, history, folder)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from core import columns as C
from core.config import FAST_WEIGHT_SWEEP, TrialConfig

NAN = float("nan")


def config_columns(**overrides: Any) -> dict[str, Any]:
    """Every TrialConfig field as a column (alpha/gamma None -> NaN, extra flattened)."""
    cfg = TrialConfig(**overrides).to_dict()
    extra = cfg.pop("extra")
    for key in C.NAN_WHEN_NONE:
        if cfg[key] is None:
            cfg[key] = NAN
    cfg.update({C.extra_column(k): v for k, v in extra.items()})
    return cfg


def epoch_values(acc: float, loss: float, epoch: int, epochs: int, val: bool) -> dict[str, float]:
    """Per-epoch metrics converging to (acc, loss) at the last epoch."""
    frac = epoch / epochs
    a = acc - 0.2 * (1 - frac)
    lo = loss + 0.5 * (1 - frac)
    row = {C.split_metric(C.TRAIN, "loss"): lo - 0.1, C.split_metric(C.TRAIN, "acc"): a + 0.05}
    for split, shift in ((C.TEST, 0.0), (C.VAL, 0.01)):
        vals = {
            "acc": a + shift,
            "loss": lo - shift,
            "ece": 0.05 + 0.01 * (1 - frac),
            "brier": 0.3,
            "member_acc": a - 0.02,
            "disagreement": 0.1 + 0.01 * frac,
            "kl": 0.02,
        }
        assert tuple(vals) == C.EVAL_KEYS
        for m, v in vals.items():
            row[C.split_metric(split, m)] = v if (split == C.TEST or val) else NAN
    return row


# Where a fabricated trial ran (core.columns.RUNTIME_KEYS): a CPU, fp32, nothing switched on.
RUNTIME = {
    C.DEVICE_NAME: "AMD EPYC 7763",
    C.RESOLVED_DEVICE: "cpu",
    C.RESOLVED_PRECISION: "fp32",
    C.RESOLVED_CHANNELS_LAST: False,
    C.RESOLVED_COMPILE: False,
}


def trial(
    trial_id: str,
    acc: float,
    loss: float,
    *,
    outcome: str = "completed",
    epochs_done: int | None = None,
    val: bool = True,
    params: float = 1e6,
    batches_per_s: float = 50.0,
    study: str = "alpha_gamma",
    robust: bool = True,
    runtime: dict[str, Any] | None = None,
    **config: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One results row and its history rows. outcome: completed | diverged | error |
    asha_stopped | early_stopped | nan (completed but its metrics are NaN). robust: the last
    epoch reports the robustness metrics (`robustness_values`; not for diverged, NaN or
    ASHA-stopped trials). runtime: where it ran (default RUNTIME)."""
    runtime = RUNTIME if runtime is None else runtime
    cfg = config_columns(**config)
    epochs = cfg["epochs"]
    done = epochs_done if epochs_done is not None else (0 if outcome == "error" else epochs)
    keys = {C.TRIAL_ID: trial_id, C.STUDY: study}
    history = []
    for e in range(1, done + 1):
        row: dict[str, Any] = {**keys, C.EPOCH: e}
        row.update(epoch_values(acc, loss, e, epochs, val))
        if outcome == "nan":
            row.update({k: NAN for k in C.EPOCH_METRICS})
        div = outcome == "diverged" and e == done
        if div:
            row.update({C.TRAIN_LOSS: NAN, C.TEST_LOSS: NAN, C.TEST_ACC: 0.1, C.TRAIN_ACC: 0.1})
        row.update(
            {
                C.PARAMS: params,
                C.BATCHES_PER_S: batches_per_s,
                C.IMAGES_PER_S: batches_per_s * cfg["batch_size"],
                C.TRAIN_FLOPS_PER_IMAGE: params * 6.0,
                C.FLOP_PER_S: params * 6.0 * batches_per_s * cfg["batch_size"],
                C.PEAK_MEMORY_MB: 500.0 + params / 1e4,
                C.EPOCH_S: 10.0,
                C.CURRENT_LR: cfg["lr"],  # `lr` (the config value) is among cfg too
                C.DIVERGED: div,
                C.EARLY_STOPPED: outcome == "early_stopped" and e == done,
            }
        )
        measured = robust and e == done and outcome not in ("diverged", "nan", "asha_stopped")
        members = cfg["ensemble_size"]
        robustness = robustness_values(acc, members) if measured else {}
        row.update({k: robustness.get(k, NAN) for k in C.ROBUSTNESS_KEYS})
        row.update(
            {
                C.NODE: "10.0.0.1",
                C.NODE_ID: "f00d",
                **runtime,
            }
        )
        assert tuple(row) == (*C.KEY_COLUMNS, *C.HISTORY_COLUMNS)
        history.append({**row, **cfg})
    res: dict[str, Any] = {
        **keys,
        **cfg,
        C.STATUS: C.STATUS_ERROR if outcome == "error" else C.STATUS_TERMINATED,
        C.ERROR: "RuntimeError: CUDA out of memory" if outcome == "error" else None,
        C.EPOCHS_DONE: done,
        C.DIVERGED: outcome == "diverged",
        C.EARLY_STOPPED: outcome == "early_stopped",
        C.ASHA_STOPPED: outcome == "asha_stopped",
        C.NODE: "10.0.0.1" if done else None,
        C.NODE_ID: "f00d" if done else None,
        **{k: v if done else None for k, v in runtime.items()},
    }
    for m in C.EPOCH_METRICS:
        col = [h[m] for h in history]
        finite = [v for v in col if not math.isnan(v)]
        best = (max if C.larger_is_better(m) else min)(finite) if finite else NAN
        res[C.summary_column(C.FINAL, m)] = col[-1] if col else NAN
        res[C.summary_column(C.BEST, m)] = best
        res[C.summary_column(C.AVG, m)] = sum(finite) / len(finite) if finite else NAN
    vals = [h[C.VAL_ACC] for h in history]
    at = max(
        (i for i, v in enumerate(vals) if not math.isnan(v)), key=lambda i: vals[i], default=None
    )
    for col, m in zip(C.AT_BEST_VAL_COLUMNS, (C.EPOCH, C.TEST_ACC, C.TEST_LOSS), strict=True):
        res[col] = NAN if at is None else float(history[at][m])
    res[C.PARAMS] = params if done else NAN
    res[C.BATCHES_PER_S] = batches_per_s if done else NAN
    res[C.IMAGES_PER_S] = batches_per_s * cfg["batch_size"] if done else NAN
    res[C.TRAIN_FLOPS_PER_IMAGE] = params * 6.0 if done else NAN
    res[C.FLOP_PER_S] = params * 6.0 * batches_per_s * cfg["batch_size"] if done else NAN
    res[C.PEAK_MEMORY_MB] = 500.0 + params / 1e4 if done else NAN
    res[C.TOTAL_S] = 10.0 * done if done else NAN
    for k in C.ROBUSTNESS_KEYS:
        res[k] = history[-1][k] if history else NAN
    return res, history


def frames(trials: Iterable[tuple[dict[str, Any], list[dict[str, Any]]]]):
    rows, hist = [], []
    for r, h in trials:
        rows.append(r)
        hist.extend(h)
    return pd.DataFrame(rows), pd.DataFrame(hist)


def ag_acc(alpha: float, gamma: float, seed: int) -> float:
    """Final test accuracy of the fabricated alpha/gamma trial (deterministic)."""
    i, j = FAST_WEIGHT_SWEEP.index(alpha), FAST_WEIGHT_SWEEP.index(gamma)
    return round(0.40 + 0.03 * i + 0.004 * j + 0.01 * seed, 6)


# Special cells of the fabricated alpha/gamma grid.
ALL_DIVERGED = (-1.0, 1.0)  # every seed diverged
ONE_ERROR = (0.5, -0.5)  # seed 0 errored
ONE_NAN = (0.2, 0.2)  # seed 1 reported NaN metrics
ASHA = (-0.2, -0.2)  # every seed stopped by ASHA after 2 epochs
NOT_RUN = (0.8, 0.8)  # no trial at all
AG_SEEDS = (0, 1, 2)


def alpha_gamma_frames(
    seeds: Iterable[int] = AG_SEEDS,
    sweep: Iterable[float] = FAST_WEIGHT_SWEEP,
    epochs: int = 3,
    special: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Full (or `sweep` x `sweep`) alpha x gamma grid, rows shuffled out of sweep order."""
    out = []
    sweep = list(sweep)
    for seed in seeds:
        # reversed / interleaved so nothing is in sweep order by accident
        for alpha in sweep[::-1]:
            for gamma in sweep[1::2] + sweep[::2]:
                cell = (alpha, gamma)
                outcome, done = "completed", None
                if special:
                    if cell == NOT_RUN:
                        continue
                    if cell == ALL_DIVERGED:
                        outcome = "diverged"
                    elif cell == ONE_ERROR and seed == 0:
                        outcome = "error"
                    elif cell == ONE_NAN and seed == 1:
                        outcome = "nan"
                    elif cell == ASHA:
                        outcome, done = "asha_stopped", 2
                tid = f"ag_a{alpha:g}_g{gamma:g}_s{seed}"
                acc = ag_acc(alpha, gamma, seed)
                out.append(
                    trial(
                        tid,
                        acc,
                        1.5 - acc,
                        outcome=outcome,
                        epochs_done=done,
                        alpha=alpha,
                        gamma=gamma,
                        seed=seed,
                        epochs=epochs,
                    )
                )
    return frames(out)


def write_experiment(
    folder: Path,
    results: pd.DataFrame,
    history: pd.DataFrame | None = None,
    study: str | None = None,
    **meta: Any,
) -> Path:
    """Write an experiment folder as a study would (results, history, study.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    results.to_parquet(folder / C.RESULTS_FILE)
    if history is not None:
        history.to_parquet(folder / C.HISTORY_FILE)
    if study is not None:
        info = {"study": study, "name": folder.name, "dataset": "cifar10", "smoke": True}
        info.update({"metric": C.VAL_ACC, "mode": "max", **meta})
        (folder / C.STUDY_FILE).write_text(json.dumps(info))
    return folder


def provenance(
    commit: str | None = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
    dirty: bool | None = False,
    package_version: str | None = "0.1.0",
    cpu: str = "AMD EPYC 7763",
    **versions: str | None,
) -> dict[str, Any]:
    """A study.json provenance record (core.provenance.provenance's keys): the given code
    version and library versions (python, torch, ray, optuna, cuda; defaults below)."""
    default = {"python": "3.11.9", "torch": "2.4.0", "ray": "2.50.0", "optuna": "4.0.0"}
    default["cuda"] = None
    default.update(versions)
    assert tuple(default) == C.PROV_LIBRARIES
    return {
        C.PROV_COMMIT: commit,
        C.PROV_DIRTY: dirty,
        C.PROV_PACKAGE_VERSION: package_version,
        C.PROV_VERSIONS: default,
        C.PROV_CPU: cpu,
    }


def mean(values: Iterable[float]) -> float:
    v = [x for x in values if not math.isnan(x)]
    return sum(v) / len(v)


def std(values: Iterable[float]) -> float:
    v = [x for x in values if not math.isnan(x)]
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def robustness_values(acc: float, members: int) -> dict[str, float]:
    """Robustness metrics of a trial of final test accuracy `acc`: corrupted accuracy
    acc - 0.05 - 0.04 * severity - 0.01 * (corruption index), loss 1.5 - that, ECE 0.02 *
    severity; OOD AUROC 0.6 + acc / 4 (MI NaN for one member), FPR95 1 - AUROC."""
    out: dict[str, float] = {}
    for i, c in enumerate(C.CORRUPTIONS):
        for s in C.SEVERITIES:
            a = acc - 0.05 - 0.04 * s - 0.01 * i
            cell = {"acc": a, "loss": 1.5 - a, "ece": 0.02 * s}
            for k in C.CORRUPT_KEYS:
                out[C.corrupt_metric(k, c, s)] = cell[k]
    for k in C.CORRUPT_KEYS:
        cells = [out[C.corrupt_metric(k, c, s)] for c in C.CORRUPTIONS for s in C.SEVERITIES]
        out[C.corrupt_metric(k)] = sum(cells) / len(cells)
    for s in C.OOD_SCORES:
        auroc = NAN if (s == "mi" and members == 1) else 0.6 + acc / 4
        out[C.ood_metric("auroc", s)] = auroc
        out[C.ood_metric("fpr95", s)] = 1 - auroc
    out[C.ROBUSTNESS_S] = 1.5
    return {k: out[k] for k in C.ROBUSTNESS_KEYS}


Builder = Callable[..., tuple[dict[str, Any], list[dict[str, Any]]]]


def ensemble_size_frames(
    sizes: Iterable[int] = (1, 2, 4, 8),
    lrs: Iterable[float] = (1e-3, 1e-2),
    seeds: Iterable[int] = (0, 1, 2),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """acc = 0.5 + 0.02*log2(size) + (0.05 if lr == 1e-3) + 0.01*seed; size 1 is 'single';
    (size 8, lr 1e-2) diverges for every seed; (size 4, lr 1e-2) seed 2 errors."""
    out = []
    for seed in seeds:
        for lr in lrs:
            for size in sizes:
                acc = es_acc(size, lr, seed)
                outcome = "completed"
                if size == 8 and lr == 1e-2:
                    outcome = "diverged"
                elif size == 4 and lr == 1e-2 and seed == 2:
                    outcome = "error"
                out.append(
                    trial(
                        f"es_m{size}_lr{lr:g}_s{seed}",
                        acc,
                        1.4 - acc,
                        outcome=outcome,
                        study="ensemble_size",
                        ensemble="single" if size == 1 else "batch",
                        ensemble_size=size,
                        lr=lr,
                        seed=seed,
                        epochs=3,
                    )
                )
    return frames(out)


def es_acc(size: int, lr: float, seed: int) -> float:
    return round(0.5 + 0.02 * math.log2(size) + (0.05 if lr == 1e-3 else 0.0) + 0.01 * seed, 6)


OPT_MODELS = (("single", 1), ("batch", 8))


def optimizer_frames(
    optimizers: Iterable[str] = ("adam", "sgd", "ivon"),
    seeds: Iterable[int] = (0, 1),
    val: bool = True,
    epochs: int = 4,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """optimizer x {single vgg11, batch x8} x seeds; sgd/batch seed 1 diverges at epoch 3."""
    out = []
    for oi, opt in enumerate(optimizers):
        for mi, (ens, size) in enumerate(OPT_MODELS):
            for seed in seeds:
                acc = 0.6 + 0.05 * oi + 0.03 * mi + 0.01 * seed
                div = opt == "sgd" and ens == "batch" and seed == 1
                out.append(
                    trial(
                        f"opt_{opt}_{ens}{size}_s{seed}",
                        acc,
                        1.2 - acc,
                        outcome="diverged" if div else "completed",
                        epochs_done=3 if div else None,
                        val=val,
                        study="optimizers",
                        optimizer=opt,
                        ensemble=ens,
                        ensemble_size=size,
                        seed=seed,
                        epochs=epochs,
                        val_fraction=0.1 if val else 0.0,
                    )
                )
    return frames(out)


SHARING_REGIMES = (("none", "none"), ("early", "none"), ("none", "deep"), ("all", "all"))


def sharing_frames(seeds: Iterable[int] = (0, 1, 2)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four regimes x seeds; params = 1e6 / (1 + regime index); regime ('all', 'all') seed 0
    diverges (its params / throughput are still measured)."""
    out = []
    for k, (net, ens) in enumerate(SHARING_REGIMES):
        for seed in seeds:
            acc = 0.7 - 0.02 * k + 0.01 * seed
            out.append(
                trial(
                    f"sh_{net}_{ens}_s{seed}",
                    acc,
                    1.2 - acc,
                    outcome="diverged" if (k == 3 and seed == 0) else "completed",
                    params=1e6 / (1 + k),
                    batches_per_s=40.0 + 5 * k + seed,
                    study="sharing",
                    sharing_network=net,
                    sharing_ensemble=ens,
                    seed=seed,
                    epochs=3,
                )
            )
    return frames(out)


# (acc, params, batches_per_s) of the fabricated search trials. Non-dominated, worked out by
# hand: accuracy vs params (fewer better) {0, 1, 3, 6}; accuracy vs batches/s {0, 1, 2, 5}.
# Trial 7 diverged and trial 8 errored: they would dominate everything, so must never count.
SEARCH_POINTS = (
    (0.90, 4e6, 30.0),
    (0.85, 2e6, 35.0),
    (0.80, 3e6, 60.0),
    (0.75, 1e6, 40.0),
    (0.70, 3e6, 50.0),
    (0.60, 5e6, 80.0),
    (0.55, 5e5, 20.0),
    (0.95, 1e5, 99.0),
    (0.99, 1e5, 99.0),
    (0.65, 2.5e6, 55.0),
)
SEARCH_OUTCOMES = {7: "diverged", 8: "error"}
PARAMS_FRONT = {"search_0", "search_1", "search_3", "search_6"}
THROUGHPUT_FRONT = {"search_0", "search_1", "search_2", "search_5"}


def search_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    out = []
    for k, (acc, params, bps) in enumerate(SEARCH_POINTS):
        res, hist = trial(
            f"search_{k}",
            acc,
            1.2 - acc,
            outcome=SEARCH_OUTCOMES.get(k, "completed"),
            params=params,
            batches_per_s=bps,
            study="search",
            alpha=round(-1 + 0.2 * k, 1),
            lr=10 ** (-4 + k / 4),
            optimizer=("adam", "sgd")[k % 2],
            seed=0,
            epochs=2,
        )
        if k == 7:  # the diverged trial's last accuracy is high: it must not be on a front
            res[C.FINAL_TEST_ACC] = acc
            res[C.FINAL_VAL_ACC] = acc + 0.01
        out.append((res, hist))
    return frames(out)
