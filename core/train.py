"""The training loop of one trial, and its command line without Ray.

`train(cfg, data, reporter)` runs one trial: build everything from the validated config,
then epoch by epoch train (`_train_epoch`), evaluate (`_evaluate`, core.evaluate), measure
robustness where due (`_measure_robustness`) and hand the epoch's metrics plus a checkpoint
(core.checkpoint) to `reporter`. Under Ray Tune (`core.trainable`) the reporter is
`ray.tune.report` with a checkpoint directory; under `python -m core.train` it prints.
Resuming is the caller's business: pass the state of the last checkpoint as `resume_state` and
training continues at the next epoch.

    python -m core.train --arch simple_cnn --epochs 1

Every `TrialConfig` field is an option (`--ensemble-size 8`, `--alpha none`; `--help` lists
each with its allowed values); the run prints one line of metrics per epoch, and a misspelled
option or a bad value is refused in one line with exit status 2 (core.cli).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
import typing
from collections.abc import Callable, Collection
from typing import Any

import click
import numpy as np
import torch

from core import columns as C
from core.checkpoint import capture, restore
from core.cli import Command, help_text, refuse
from core.config import ConfigError, TrialConfig, allowed_values, parse_field
from core.cost import peak_memory_mb, reset_peak_memory, train_flops_per_image
from core.data import DataBundle, TensorLoader, load_for_config
from core.errors import DataError, refusal
from core.evaluate import Robustness, eval_loader, split_metrics
from core.models import count_parameters, model_for_config
from core.optim import build_optimizer, train_step
from core.predictions import PredictionWriter
from core.provenance import device_name
from core.runtime import (
    Runtime,
    clock,
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


def _train_loader(cfg: TrialConfig, data: DataBundle, device: torch.device) -> TensorLoader:
    """The training split's shuffled, augmented batches: what training and its timing read."""
    # MIMO repeats each image mimo_batch_repeat times in a step: its authors divide the loader's
    # batch by it, so that a step still trains on about batch_size rows (core.layers.mimo)
    repeat = cfg.mimo_batch_repeat if cfg.ensemble == "mimo" else 1
    return TensorLoader(
        data.train_x,
        data.train_y,
        max(1, cfg.batch_size // repeat),
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


@dataclasses.dataclass
class _Trial:
    """What every epoch of one trial uses, built once from its config and set-up model."""

    cfg: TrialConfig
    runtime: Runtime
    model: torch.nn.Module
    optimizer: Any
    scheduler: Any
    train_loader: TensorLoader
    eval_loaders: dict[str, TensorLoader | None]  # C.TEST, C.VAL (None: no validation split)
    robustness: Robustness | None
    n_params: int
    flops: float  # training FLOPs per image
    ran_on: dict[str, str | bool]  # runtime_columns, reported every epoch

    @classmethod
    def build(cls, cfg: TrialConfig, runtime: Runtime, data: DataBundle, model) -> _Trial:
        device = runtime.device
        ran_on = runtime_columns(runtime)
        n_params = count_parameters(unwrap(model))
        shape = tuple(data.train_x.shape[1:])
        flops = train_flops_per_image(unwrap(model), cfg, shape, data.num_classes)
        train_loader = _train_loader(cfg, data, device)
        eval_batch = max(cfg.batch_size, 256)
        eval_loaders = {
            C.TEST: eval_loader(data.test_x, data.test_y, eval_batch, data, device),
            C.VAL: None,
        }
        if data.val_x is not None:
            eval_loaders[C.VAL] = eval_loader(data.val_x, data.val_y, eval_batch, data, device)
        n_train = len(data.train_y)
        optimizer, scheduler = build_optimizer(unwrap(model), cfg, n_train, len(train_loader))
        robustness = Robustness(cfg, data, device, runtime) if cfg.robustness else None
        return cls(
            cfg=cfg,
            runtime=runtime,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            train_loader=train_loader,
            eval_loaders=eval_loaders,
            robustness=robustness,
            n_params=n_params,
            flops=flops,
            ran_on=ran_on,
        )


def train(
    cfg: TrialConfig,
    data: DataBundle | None = None,
    reporter: Reporter | None = None,
    resume_state: dict[str, Any] | None = None,
    robustness_epochs: Collection[int] = (),
    predictions: PredictionWriter | None = None,
) -> list[dict[str, Any]]:
    """Train one trial; returns the list of per-epoch metric dicts it reported. Robustness is
    measured at the last epoch, every `cfg.robustness_every` epochs and at `robustness_epochs`
    (a study's ASHA rungs, where a trial may be stopped). With `predictions`, the trial's
    predictions file is written before the report of each epoch that changes it
    (core.predictions.PredictionWriter.keep)."""
    runtime, data, model = _setup(cfg, data)
    print(runtime.describe(cfg), flush=True)  # once per trial: what 'auto' resolved to
    t = _Trial.build(cfg, runtime, data, model)

    start_epoch, best_val, bad_epochs, best_val_acc = 1, math.inf, 0, -math.inf
    if resume_state is not None:
        saved = restore(resume_state, t.model, t.optimizer, t.scheduler)
        start_epoch, best_val, bad_epochs = saved.epoch + 1, saved.best_val, saved.bad_epochs
        best_val_acc = saved.best_val_acc  # the file written before stays valid until beaten

    history: list[dict[str, Any]] = []
    for epoch in range(start_epoch, cfg.epochs + 1):
        metrics, t0 = _train_epoch(t, epoch)
        diverged = metrics[C.DIVERGED]
        predicted = _evaluate(t, metrics, diverged)
        test_probs = predicted[C.TEST][0] if C.TEST in predicted else None
        metrics[C.EPOCH_S] = time.perf_counter() - t0
        if predictions is not None and predicted:  # nothing evaluated after a divergence
            best_val_acc = _offer(predictions, epoch, metrics, predicted, best_val_acc)

        if t.eval_loaders[C.VAL] is not None and not diverged:  # early stopping
            if metrics[C.VAL_LOSS] < best_val:
                best_val, bad_epochs = metrics[C.VAL_LOSS], 0
            else:
                bad_epochs += 1
            metrics[C.EARLY_STOPPED] = cfg.patience is not None and bad_epochs >= cfg.patience

        _measure_robustness(t, epoch, metrics, test_probs, robustness_epochs)

        state = None  # nothing worth resuming from after a divergence
        if not diverged:
            progress = dict(
                epoch=epoch, best_val=best_val, bad_epochs=bad_epochs, best_val_acc=best_val_acc
            )
            state = capture(t.model, t.optimizer, t.scheduler, cfg, runtime, **progress)
        history.append(metrics)
        if reporter is not None:
            reporter(metrics, state)
        if diverged or metrics[C.EARLY_STOPPED]:
            break
    return history


def _train_epoch(t: _Trial, epoch: int) -> tuple[dict[str, Any], float]:
    """One pass over the training split (stopped at the first non-finite loss: diverged), as
    the epoch's training metrics, and the clock at its start (for the epoch's whole time)."""
    device = t.runtime.device
    t.train_loader.set_epoch(epoch)
    t.model.train()
    loss_sum, correct, seen, n_batches, diverged = 0.0, 0, 0, 0, False
    reset_peak_memory(device)
    t0 = clock(device)
    for x, y in t.train_loader:
        x = t.runtime.batch(x)
        loss, logits = train_step(
            t.model, t.optimizer, x, y, t.cfg, t.scheduler, t.runtime.autocast
        )
        if not math.isfinite(loss):
            diverged = True
            break
        n_batches += 1
        seen += len(y)
        loss_sum += loss * len(y)
        # Ensemble training accuracy: mean member probabilities, as at test time.
        correct += (logits.softmax(-1).mean(0).argmax(-1) == y).sum().item()
    train_s = clock(device) - t0
    metrics: dict[str, Any] = {
        C.EPOCH: epoch,
        C.TRAIN_LOSS: loss_sum / seen if seen and not diverged else math.nan,
        C.TRAIN_ACC: correct / seen if seen and not diverged else math.nan,
        C.PARAMS: t.n_params,
        C.BATCHES_PER_S: n_batches / train_s if train_s > 0 else math.nan,
        C.IMAGES_PER_S: seen / train_s if train_s > 0 else math.nan,
        C.TRAIN_FLOPS_PER_IMAGE: t.flops,
        C.FLOP_PER_S: t.flops * seen / train_s if train_s > 0 else math.nan,
        C.PEAK_MEMORY_MB: peak_memory_mb(device),
        C.CURRENT_LR: t.optimizer.param_groups[0]["lr"],
        C.DIVERGED: diverged,
        C.EARLY_STOPPED: False,
        **t.ran_on,
    }
    return metrics, t0


def _evaluate(
    t: _Trial, metrics: dict[str, Any], diverged: bool
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The test and validation metrics into `metrics` (NaN after a divergence); returns each
    evaluated split's member probabilities and labels (none after a divergence)."""
    loaders = {split: None if diverged else ld for split, ld in t.eval_loaders.items()}
    scores, predicted = split_metrics(t.model, t.optimizer, loaders, t.cfg, t.runtime)
    metrics.update(scores)
    return predicted


def _offer(
    predictions: PredictionWriter,
    epoch: int,
    metrics: dict[str, Any],
    predicted: dict[str, tuple[torch.Tensor, torch.Tensor]],
    best_val_acc: float,
) -> float:
    """Offer the epoch's ensemble probabilities (mean over members) to the trial's predictions
    file, which keeps them if the epoch is the one selection reads; the best val_acc so far."""
    splits = {s: (p.mean(0).numpy(), y.numpy()) for s, (p, y) in predicted.items()}
    members = predicted[C.TEST][0].shape[0]
    return predictions.keep(epoch, metrics[C.VAL_ACC], best_val_acc, members, splits)


def _measure_robustness(
    t: _Trial,
    epoch: int,
    metrics: dict[str, Any],
    test_probs: torch.Tensor | None,
    rungs: Collection[int],
) -> None:
    """Every ROBUSTNESS_KEYS into `metrics`: measured at the last epoch (early stopping's
    too), every `cfg.robustness_every` epochs and at `rungs`; NaN at the others."""
    metrics.update({k: math.nan for k in C.ROBUSTNESS_KEYS})
    last = epoch == t.cfg.epochs or metrics[C.EARLY_STOPPED]
    every = t.cfg.robustness_every > 0 and epoch % t.cfg.robustness_every == 0
    due = last or every or epoch in rungs
    if t.robustness is None or metrics[C.DIVERGED] or not due:
        return
    t1 = clock(t.runtime.device)
    metrics.update(t.robustness.measure(t.model, t.optimizer, test_probs))
    metrics[C.ROBUSTNESS_S] = clock(t.runtime.device) - t1


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
    seen, t0 = 0, clock(device)
    for _ in range(steps):
        x, y = next(source)
        train_step(model, optimizer, runtime.batch(x), y, cfg, scheduler, runtime.autocast)
        seen += len(y)
    elapsed = clock(device) - t0
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
    own = {  # the settings the kind reads (BatchEnsemble's fast-weight inits by default)
        "packed": f"packed_width={cfg.packed_width} packed_groups={cfg.packed_groups}",
        "mimo": f"mimo_rho={cfg.mimo_rho} mimo_batch_repeat={cfg.mimo_batch_repeat}",
    }.get(cfg.ensemble, f"alpha={cfg.alpha} gamma={cfg.gamma}")
    return (
        f"{cfg.arch} {cfg.ensemble} x{cfg.ensemble_size} {own} "
        f"sharing={cfg.sharing_network}/{cfg.sharing_ensemble} {cfg.optimizer} lr={cfg.lr}"
    )


if __name__ == "__main__":
    main()
