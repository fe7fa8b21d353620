"""The training loop of one trial, and its command line without Ray.

`train(cfg, data, reporter)` runs one trial: build everything from the validated config,
train epoch by epoch, evaluate, and hand each epoch's metrics plus a checkpoint state to
`reporter`. Under Ray Tune (`core.trainable`) the reporter is `ray.tune.report` with a
checkpoint directory; under `python -m core.train` it prints. Resuming is the caller's
business: pass the state of the last checkpoint as `resume_state` and training continues at
the next epoch.

    python -m core.train --arch simple_cnn --epochs 1

Every `TrialConfig` field is an option (`--ensemble-size 8`, `--alpha none`; `--help` lists
each with its allowed values); the run prints one line of metrics per epoch, and a misspelled
option or a bad value is refused in one line with exit status 2 (core.cli).
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
import typing
from collections.abc import Callable, Collection
from typing import Any

import click
import numpy as np
import torch

from core import columns as C
from core.cli import Command, help_text, refuse
from core.config import ConfigError, TrialConfig, allowed_values, parse_field
from core.corruptions import corrupt
from core.cost import peak_memory_mb, reset_peak_memory, train_flops_per_image
from core.data import (
    DataBundle,
    DataNotFoundError,
    TensorLoader,
    load_for_config,
    load_ood,
    stratified_subset,
)
from core.errors import DataError, refusal
from core.metrics import evaluation_metrics
from core.models import count_parameters, model_for_config
from core.ood import ood_metrics
from core.optim import (
    build_optimizer,
    load_optimizer_state_dict,
    optimizer_state_dict,
    predict_probs,
    train_step,
)
from core.provenance import device_name
from core.runtime import (
    Runtime,
    load_model_state,
    prepare_model,
    resolve_runtime,
    retain_freed_memory,
    unwrap,
)

Reporter = Callable[[dict[str, Any], dict[str, Any] | None], None]


def select_device(name: str) -> torch.device:
    """`auto` takes CUDA when present; `cuda` without a GPU is refused, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            refusal("device", name, "'auto' or 'cpu'", why="torch sees no CUDA device here")
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@torch.no_grad()
def predict(
    model, optimizer, loader: TensorLoader, cfg: TrialConfig, runtime: Runtime | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Member probabilities (M, N, K) in fp32 on the CPU and the labels (N,) of one split,
    the forward passes run as `runtime` says (bf16 autocast, channels_last; default fp32)."""
    model.eval()
    probs, labels = [], []
    for x, y in loader:
        if runtime is None:
            p = predict_probs(model, optimizer, x, cfg)
        else:
            p = predict_probs(model, optimizer, runtime.batch(x), cfg, runtime.autocast)
        probs.append(p.float().cpu())  # (M, B, K)
        labels.append(y.cpu())
    return torch.cat(probs, dim=1), torch.cat(labels)


def evaluate(
    model, optimizer, loader: TensorLoader, cfg: TrialConfig, runtime: Runtime | None = None
) -> dict[str, float]:
    """Metrics of the ensemble on one split: member probabilities gathered, then scored."""
    return evaluation_metrics(*predict(model, optimizer, loader, cfg, runtime))


# Seed of the corruptions' random draws: one for every trial, so all see the same images.
CORRUPTION_SEED = 0


class Robustness:
    """The robustness evaluation of one trial: a stratified subset of the test set corrupted
    by every corruption of core.columns.CORRUPTIONS at every severity (made on the trial's
    device at the first evaluation and kept), and the far-OOD images. The clean test set and
    its metrics are not touched: the OOD scores of the in-distribution images are those of
    the clean test evaluation of the same epoch."""

    def __init__(
        self,
        cfg: TrialConfig,
        data: DataBundle,
        device: torch.device,
        runtime: Runtime | None = None,
    ):
        self.cfg, self.device, self.runtime = cfg, device, runtime
        self.common = dict(mean=data.mean, std=data.std, device=device)
        self.batch_size = max(cfg.batch_size, 1024)
        idx = stratified_subset(data.test_y, data.num_classes, cfg.corruption_subset, stream=2)
        self.x = data.test_x[idx].to(device)
        self.y = data.test_y[idx]
        self.images: torch.Tensor | None = None  # every cell's corrupted images, in order
        self.ood_x: torch.Tensor | None = None
        self.notice: str | None = None
        if cfg.ood_dataset != "none":
            try:
                ood = load_ood(
                    cfg.ood_dataset, cfg.ood_dir, tuple(data.test_x.shape[2:]), data.test_x.shape[1]
                )
            except DataNotFoundError as e:
                self.notice = f"notice: no OOD metrics for this trial (NaN): {e}"
                print(self.notice, file=sys.stderr, flush=True)
            else:
                # ood_subset images (at most all), the same ones in every trial
                n = min(len(ood), cfg.ood_subset)
                g = torch.Generator().manual_seed(CORRUPTION_SEED)
                pick = torch.sort(torch.randperm(len(ood), generator=g)[:n]).values
                self.ood_x = ood[pick].to(device)

    def _loader(self, x: torch.Tensor, y: torch.Tensor) -> TensorLoader:
        return TensorLoader(x, y, self.batch_size, shuffle=False, augment=False, **self.common)

    def measure(self, model, optimizer, test_probs: torch.Tensor) -> dict[str, float]:
        """Every key of core.columns.ROBUSTNESS_METRICS (NaN where not measurable)."""
        out: dict[str, float] = {}
        cells = [(name, sev) for name in C.CORRUPTIONS for sev in C.SEVERITIES]
        if self.images is None:  # made once per trial, on its device
            sets = [corrupt(self.x, c, s, seed=CORRUPTION_SEED) for c, s in cells]
            self.images = torch.cat(sets)
        # one pass over all cells (large batches: the sets are small), then scored per cell
        n = len(self.y)
        probs, _ = predict(
            model,
            optimizer,
            self._loader(self.images, self.y.repeat(len(cells))),
            self.cfg,
            self.runtime,
        )
        for i, (name, sev) in enumerate(cells):
            scores = evaluation_metrics(probs[:, i * n : (i + 1) * n], self.y)
            for k in C.CORRUPT_KEYS:
                out[C.corrupt_metric(k, name, sev)] = scores[k]
        for k in C.CORRUPT_KEYS:
            values = [out[C.corrupt_metric(k, c, s)] for c, s in cells]
            out[C.corrupt_metric(k)] = float(np.mean(values))
        if self.ood_x is not None:
            labels = torch.zeros(len(self.ood_x), dtype=torch.int64)
            ood_probs, _ = predict(
                model, optimizer, self._loader(self.ood_x, labels), self.cfg, self.runtime
            )
            out.update(ood_metrics(test_probs, ood_probs))
        else:
            out.update({m: math.nan for m in C.OOD_METRICS})
        return out


def _train_loader(cfg: TrialConfig, data: DataBundle, device: torch.device) -> TensorLoader:
    """The training split's shuffled, augmented batches: what training and its timing read."""
    return TensorLoader(
        data.train_x,
        data.train_y,
        cfg.batch_size,
        shuffle=True,
        augment=cfg.augment,
        seed=cfg.seed,
        mean=data.mean,
        std=data.std,
        device=device,
    )


def _setup(
    cfg: TrialConfig, data: DataBundle | None
) -> tuple[Runtime, DataBundle, torch.nn.Module]:
    """Threads, device and how the trial computes on it (core.runtime: precision,
    channels_last, compile), seeds, the trial's data split and its model, prepared as the
    runtime says (`unwrap(model)` is the uncompiled module): what training and the throughput
    timing both start from."""
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    retain_freed_memory()  # no page faults for the activations every step reallocates
    device = select_device(cfg.device)
    runtime = resolve_runtime(cfg, device)  # a refusal here comes before any data is loaded
    seed_everything(cfg.seed)
    data = load_for_config(cfg, data)
    model = model_for_config(cfg, data.num_classes, in_channels=data.train_x.shape[1]).to(device)
    return runtime, data, prepare_model(model, runtime)


def runtime_columns(runtime: Runtime) -> dict[str, str | bool]:
    """What a trial computes on, as core.columns.RUNTIME_KEYS: the device's name and what the
    config's device, precision, channels_last and compile resolved to there. Reported with
    every epoch, so that each row of the results says where its numbers come from (a study's
    `auto` trials may resolve differently on a cluster's different nodes)."""
    return {
        C.DEVICE_NAME: device_name(runtime.device),
        C.RESOLVED_DEVICE: str(runtime.device),
        C.RESOLVED_PRECISION: runtime.precision,
        C.RESOLVED_CHANNELS_LAST: runtime.channels_last,
        C.RESOLVED_COMPILE: runtime.compile,
    }


def train(
    cfg: TrialConfig,
    data: DataBundle | None = None,
    reporter: Reporter | None = None,
    resume_state: dict[str, Any] | None = None,
    robustness_epochs: Collection[int] = (),
) -> list[dict[str, Any]]:
    """Train one trial; returns the list of per-epoch metric dicts it reported. Robustness is
    measured at the last epoch, every `cfg.robustness_every` epochs and at `robustness_epochs`
    (a study's ASHA rungs, where a trial may be stopped)."""
    runtime, data, model = _setup(cfg, data)
    device = runtime.device
    print(runtime.describe(cfg), flush=True)  # once per trial: what 'auto' resolved to
    ran_on = runtime_columns(runtime)  # and in every report
    n_params = count_parameters(unwrap(model))
    shape = tuple(data.train_x.shape[1:])
    flops = train_flops_per_image(unwrap(model), cfg, shape, data.num_classes)

    common = dict(mean=data.mean, std=data.std, device=device)
    train_loader = _train_loader(cfg, data, device)
    test_loader = TensorLoader(
        data.test_x, data.test_y, max(cfg.batch_size, 256), shuffle=False, augment=False, **common
    )
    val_loader = None
    if data.val_x is not None:
        val_loader = TensorLoader(
            data.val_x,
            data.val_y,
            max(cfg.batch_size, 256),
            shuffle=False,
            augment=False,
            **common,
        )
    optimizer, scheduler = build_optimizer(unwrap(model), cfg, len(data.train_y), len(train_loader))
    robustness = Robustness(cfg, data, device, runtime) if cfg.robustness else None

    start_epoch, best_val, bad_epochs = 1, math.inf, 0
    if resume_state is not None:
        load_model_state(model, resume_state["model"])  # into the uncompiled module
        load_optimizer_state_dict(optimizer, resume_state["optimizer"])  # IVON's step count too
        scheduler.load_state_dict(resume_state["scheduler"])
        _set_rng_state(resume_state["rng"])
        start_epoch = resume_state["epoch"] + 1
        best_val, bad_epochs = resume_state["best_val"], resume_state["bad_epochs"]

    rungs = set(robustness_epochs)
    history: list[dict[str, Any]] = []
    for epoch in range(start_epoch, cfg.epochs + 1):
        train_loader.set_epoch(epoch)
        model.train()
        loss_sum, correct, seen, n_batches, diverged = 0.0, 0, 0, 0, False
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        reset_peak_memory(device)
        t0 = time.perf_counter()
        for x, y in train_loader:
            x = runtime.batch(x)
            loss, logits = train_step(model, optimizer, x, y, cfg, scheduler, runtime.autocast)
            if not math.isfinite(loss):
                diverged = True
                break
            n_batches += 1
            seen += len(y)
            loss_sum += loss * len(y)
            # Ensemble training accuracy: mean member probabilities, as at test time.
            correct += (logits.softmax(-1).mean(0).argmax(-1) == y).sum().item()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_s = time.perf_counter() - t0

        metrics: dict[str, Any] = {
            C.EPOCH: epoch,
            C.TRAIN_LOSS: loss_sum / seen if seen and not diverged else math.nan,
            C.TRAIN_ACC: correct / seen if seen and not diverged else math.nan,
            C.PARAMS: n_params,
            C.BATCHES_PER_S: n_batches / train_s if train_s > 0 else math.nan,
            C.IMAGES_PER_S: seen / train_s if train_s > 0 else math.nan,
            C.TRAIN_FLOPS_PER_IMAGE: flops,
            C.FLOP_PER_S: flops * seen / train_s if train_s > 0 else math.nan,
            C.PEAK_MEMORY_MB: peak_memory_mb(device),
            C.CURRENT_LR: optimizer.param_groups[0]["lr"],
            C.DIVERGED: diverged,
            C.EARLY_STOPPED: False,
            **ran_on,
        }
        test_probs = None
        for split, loader in ((C.TEST, test_loader), (C.VAL, val_loader)):
            scores = {}
            if loader is not None and not diverged:
                probs, labels = predict(model, optimizer, loader, cfg, runtime)
                scores = evaluation_metrics(probs, labels)
                if split == C.TEST:
                    test_probs = probs
            for k in C.EVAL_KEYS:
                metrics[C.split_metric(split, k)] = float(scores.get(k, math.nan))
        metrics[C.EPOCH_S] = time.perf_counter() - t0

        if val_loader is not None and not diverged:
            if metrics[C.VAL_LOSS] < best_val:
                best_val, bad_epochs = metrics[C.VAL_LOSS], 0
            else:
                bad_epochs += 1
            metrics[C.EARLY_STOPPED] = cfg.patience is not None and bad_epochs >= cfg.patience

        metrics.update({k: math.nan for k in C.ROBUSTNESS_KEYS})
        last = epoch == cfg.epochs or metrics[C.EARLY_STOPPED]
        every = cfg.robustness_every > 0 and epoch % cfg.robustness_every == 0
        if robustness is not None and not diverged and (last or every or epoch in rungs):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t1 = time.perf_counter()
            metrics.update(robustness.measure(model, optimizer, test_probs))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            metrics[C.ROBUSTNESS_S] = time.perf_counter() - t1

        state = None
        if not diverged:
            state = {
                "model": unwrap(model).state_dict(),  # no `_orig_mod.`: loads uncompiled
                "optimizer": optimizer_state_dict(optimizer),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_state(),
                "epoch": epoch,
                "best_val": best_val,
                "bad_epochs": bad_epochs,
                "config": cfg.to_dict(),
                "runtime": runtime.as_dict(),
            }
        history.append(metrics)
        if reporter is not None:
            reporter(metrics, state)
        if diverged or metrics[C.EARLY_STOPPED]:
            break
    return history


def time_train_steps(
    cfg: TrialConfig, data: DataBundle | None = None, steps: int = 20, warmup: int = 3
) -> dict[str, float]:
    """Training throughput of cfg's model timed on its own: `warmup` steps, then `steps` timed
    steps of the training loop (loader, augmentation and train step) on the training split.

    A trial's own batches/s is measured while other trials may share its node; this is the
    fair measurement, for the caller to run with nothing else running (the sharing study runs
    it as one task at a time after every trial finished). Returns CALIB_BATCHES_PER_S and
    CALIB_IMAGES_PER_S.
    """
    runtime, data, model = _setup(cfg, data)
    device = runtime.device
    loader = _train_loader(cfg, data, device)
    optimizer, scheduler = build_optimizer(unwrap(model), cfg, len(data.train_y), len(loader))
    model.train()

    def batches():
        epoch = 0
        while True:
            epoch += 1
            loader.set_epoch(epoch)
            yield from loader

    source = batches()
    for _ in range(warmup):  # with compile on, the first warm-up step compiles
        x, y = next(source)
        train_step(model, optimizer, runtime.batch(x), y, cfg, scheduler, runtime.autocast)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seen, t0 = 0, time.perf_counter()
    for _ in range(steps):
        x, y = next(source)
        train_step(model, optimizer, runtime.batch(x), y, cfg, scheduler, runtime.autocast)
        seen += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - t0
    return {C.CALIB_BATCHES_PER_S: steps / elapsed, C.CALIB_IMAGES_PER_S: seen / elapsed}


# ----------------------------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------------------------
_SHOWN = (
    C.EPOCH,
    C.TRAIN_LOSS,
    C.TRAIN_ACC,
    C.TEST_ACC,
    C.TEST_LOSS,
    C.split_metric(C.TEST, "ece"),
    C.VAL_ACC,
    C.VAL_LOSS,
    C.BATCHES_PER_S,
    C.EPOCH_S,
    C.corrupt_metric("acc"),
    C.ood_metric("auroc", "msp"),
    C.ROBUSTNESS_S,
)
_HELP = """Train one trial without Ray and print one line of metrics per epoch. Every TrialConfig
field is an option, parsed like a study's --set field=value (`none` where None is allowed).

python -m core.train --arch simple_cnn --epochs 2 --train-subset 2000
"""


def command() -> click.Command:
    """`python -m core.train`: one option per TrialConfig field (`--ensemble-size 8`, `--alpha
    none`), its allowed values and default in `--help`; the study scripts' conventions
    (core.cli): a typo gets a suggestion, a refused value one line and exit status 2."""
    params = [
        click.Option(
            ["--" + f.name.replace("_", "-"), f.name],
            type=str,  # parsed like --set field=value (core.config.parse_field): one path
            default=None,
            metavar=_metavar(hints),
            help=f"{allowed_values(f.name)}; default {f.default!r}",
        )
        for f, hints in _option_fields()
    ]
    return Command(name="python -m core.train", callback=_run, params=params, help=help_text(_HELP))


def _option_fields() -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(TrialConfig)
    return [(f, hints[f.name]) for f in dataclasses.fields(TrialConfig) if f.name != "extra"]


def _metavar(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    return "|".join(getattr(a, "__name__", str(a)) for a in args).upper()


def _run(**given: str | None) -> None:
    try:
        values = {k: parse_field(k, v) for k, v in given.items() if v is not None}
        cfg = TrialConfig.from_dict(values)
        select_device(cfg.device)  # a device this machine lacks: refused before any work
    except ConfigError as e:
        refuse(str(e))

    def report(metrics: dict[str, Any], _state: Any) -> None:
        shown = {k: metrics[k] for k in _SHOWN if k in metrics}
        for k in C.ROBUSTNESS_KEYS:  # measured at the end only: not shown as NaN before
            if k in shown and math.isnan(shown[k]):
                del shown[k]
        line = "  ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()
        )
        flags = [k for k in (C.DIVERGED, C.EARLY_STOPPED) if metrics.get(k)]
        print(line + ("  " + " ".join(flags) if flags else ""), flush=True)

    print(f"trial: {_params_line(cfg)}", flush=True)
    try:
        train(cfg, reporter=report)
    except (ConfigError, DataError, FileNotFoundError) as e:
        refuse(str(e))


def main(argv: list[str] | None = None) -> None:
    """Run the command line (exits: 0, or 2 on a refusal)."""
    command().main(args=argv, prog_name="python -m core.train")


def _params_line(cfg: TrialConfig) -> str:
    return (
        f"{cfg.arch} {cfg.ensemble} x{cfg.ensemble_size} alpha={cfg.alpha} gamma={cfg.gamma} "
        f"sharing={cfg.sharing_network}/{cfg.sharing_ensemble} {cfg.optimizer} lr={cfg.lr}"
    )


if __name__ == "__main__":
    main()
