"""Evaluation of one trial's ensemble: its predictions on a split, their metrics, and the
robustness evaluation (corrupted test images and far-OOD images).

`predict` gathers the member probabilities of a split in fp32 (the forward passes run as the
trial's `Runtime` says); `evaluate` scores them (core.metrics); `split_metrics` scores the test
and validation splits of one epoch as core.columns names them; `Robustness` holds a trial's
corrupted and OOD images and measures every key of core.columns.ROBUSTNESS_METRICS.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch

from core import columns as C
from core.config import TrialConfig
from core.corruptions import corrupt
from core.data import DataBundle, DataNotFoundError, TensorLoader, load_ood, stratified_subset
from core.metrics import evaluation_metrics
from core.ood import ood_metrics
from core.optim import predict_probs
from core.runtime import Runtime

# Seed of the corruptions' random draws: one for every trial, so all see the same images.
CORRUPTION_SEED = 0


def eval_loader(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, data: DataBundle, device: torch.device
) -> TensorLoader:
    """Batches of images (x, y) in order, unaugmented, normalised as `data`'s, on `device`."""
    return TensorLoader(
        x, y, batch_size, shuffle=False, augment=False, mean=data.mean, std=data.std, device=device
    )


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


def split_metrics(
    model,
    optimizer,
    loaders: dict[str, TensorLoader | None],
    cfg: TrialConfig,
    runtime: Runtime,
) -> tuple[dict[str, float], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Every EVAL_KEYS metric of each split in `loaders` (C.TEST, C.VAL) as
    `C.split_metric(split, key)`, NaN for a split without a loader; and each evaluated split's
    member probabilities (M, N, K) and labels (N,), which the OOD scores (test) and the
    trial's predictions file (core.predictions) reuse."""
    out: dict[str, float] = {}
    predicted: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for split, loader in loaders.items():
        scores = {}
        if loader is not None:
            predicted[split] = predict(model, optimizer, loader, cfg, runtime)
            scores = evaluation_metrics(*predicted[split])
        for k in C.EVAL_KEYS:
            out[C.split_metric(split, k)] = float(scores.get(k, math.nan))
    return out, predicted


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
        self.cfg, self.data, self.device, self.runtime = cfg, data, device, runtime
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
        return eval_loader(x, y, self.batch_size, self.data, self.device)

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
