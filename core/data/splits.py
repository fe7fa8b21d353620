"""Stratified subsets, the validation split, and `load_for_config` (load, then split as a
TrialConfig says).

Subsets draw every class as evenly as its size allows; the validation split holds out the
same share of each class. Splits are deterministic per seed and keep the original order, so
that every trial of a study with split seed 0 (TrialConfig.split_seed's default) trains and
evaluates on the same examples; with split_seed None each seed draws its own split.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from core.config import TrialConfig
from core.data.bundle import DataBundle, channel_stats
from core.data.datasets import load_dataset
from core.data.rng import seeded_generator
from core.errors import ConfigError, refusal

__all__ = ["load_for_config", "split_data", "split_seed", "stratified_subset"]


def _balanced_allocation(counts: list[int], n: int) -> list[int]:
    """Split n over classes as evenly as their sizes allow (counts differ by <= 1 unless a
    class runs out)."""
    k = len(counts)
    alloc = [0] * k
    remaining = n
    for i, c in enumerate(sorted(range(k), key=lambda c: (counts[c], c))):
        take = min(counts[c], remaining // (k - i))
        alloc[c] = take
        remaining -= take
    while remaining > 0:
        for c in range(k):
            if remaining and alloc[c] < counts[c]:
                alloc[c] += 1
                remaining -= 1
    return alloc


def _stratified_indices(
    y: torch.Tensor, num_classes: int, n: int | None, g: torch.Generator, field_name: str
) -> list[torch.Tensor]:
    """Per class, a random permutation of (a balanced share of n of) its indices."""
    per_class = [torch.nonzero(y == c).flatten() for c in range(num_classes)]
    counts = [len(ix) for ix in per_class]
    total = sum(counts)
    if n is None:
        alloc = counts
    else:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(refusal(field_name, n, "an integer >= 1 (or None for all)"))
        if n > total:
            raise ConfigError(
                refusal(
                    field_name,
                    n,
                    f"1..{total} or None",
                    why=f"larger than the {total} examples available",
                )
            )
        alloc = _balanced_allocation(counts, n)
    return [
        ix[torch.randperm(len(ix), generator=g)[:a]] for ix, a in zip(per_class, alloc, strict=True)
    ]


def stratified_subset(y: torch.Tensor, num_classes: int, n: int, stream: int) -> torch.Tensor:
    """Sorted indices of a stratified subset of min(n, len(y)) examples of labels `y`, drawn with
    split seed 0 from `stream` (the robustness evaluation's corrupted images use stream 2), so
    that every trial of a study gets the same subset."""
    n = min(int(n), int(y.shape[0]))
    parts = _stratified_indices(y, num_classes, n, seeded_generator(0, stream), "corruption_subset")
    return torch.sort(torch.cat(parts)).values


def _check_val_fraction(bundle: DataBundle, val_fraction: float) -> None:
    """Refuse a val_fraction outside [0, 1), or a second validation split."""
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, int | float)
        or not (0.0 <= val_fraction < 1.0)
    ):
        raise ConfigError(refusal("val_fraction", val_fraction, "a number in [0, 1)"))
    if val_fraction > 0 and bundle.val_x is not None:
        raise ConfigError(
            refusal(
                "val_fraction",
                val_fraction,
                "0 here, or a value in [0, 1) on the unsplit bundle",
                why=f"this bundle already has a validation split of {bundle.num_val} examples",
            )
        )


def _hold_out(
    train_parts: list[torch.Tensor], val_fraction: float, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (train, validation) indices: the first round(val_fraction * n) of each class's
    permuted indices are held out, leaving at least one in train."""
    tr, va = [], []
    for ix in train_parts:
        n_val = math.floor(val_fraction * len(ix) + 0.5) if val_fraction > 0 else 0
        n_val = min(n_val, max(len(ix) - 1, 0))
        va.append(ix[:n_val])
        tr.append(ix[n_val:])
    train_idx = torch.sort(torch.cat(tr)).values
    val_idx = torch.sort(torch.cat(va)).values
    if val_fraction > 0 and len(val_idx) == 0:
        raise ConfigError(
            refusal(
                "val_fraction",
                val_fraction,
                "a larger val_fraction or train_subset",
                why=f"with {len(train_idx)} training examples over {num_classes} classes this "
                "leaves an empty validation split",
            )
        )
    return train_idx, val_idx


def split_data(
    bundle: DataBundle,
    *,
    train_subset: int | None = None,
    test_subset: int | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> DataBundle:
    """A new bundle with a stratified train subset, test subset and validation split.

    train_subset / test_subset: number of examples drawn per class as evenly as possible
    (None: all). val_fraction: the share of each class of the (subset of the) training set
    held out as validation (rounded per class; at least one example per class stays in
    train). Deterministic for a given seed; indices keep their original order. mean / std
    are recomputed from the resulting training set.
    """
    _check_val_fraction(bundle, val_fraction)
    k = bundle.num_classes
    train_parts = _stratified_indices(
        bundle.train_y, k, train_subset, seeded_generator(seed, 0), "train_subset"
    )
    test_parts = _stratified_indices(
        bundle.test_y, k, test_subset, seeded_generator(seed, 1), "test_subset"
    )
    train_idx, val_idx = _hold_out(train_parts, val_fraction, k)
    test_idx = torch.sort(torch.cat(test_parts)).values
    val_x = bundle.val_x
    val_y = bundle.val_y
    if val_fraction > 0:
        val_x, val_y = bundle.train_x[val_idx], bundle.train_y[val_idx]
    train_x = bundle.train_x[train_idx]
    mean, std = channel_stats(train_x)
    return replace(
        bundle,
        train_x=train_x,
        train_y=bundle.train_y[train_idx],
        test_x=bundle.test_x[test_idx],
        test_y=bundle.test_y[test_idx],
        val_x=val_x,
        val_y=val_y,
        mean=mean,
        std=std,
    )


def split_seed(cfg: TrialConfig) -> int:
    """The seed of cfg's data split: cfg.split_seed, or the trial's seed where it is None."""
    return cfg.seed if cfg.split_seed is None else cfg.split_seed


def load_for_config(cfg: TrialConfig, data: DataBundle | None = None) -> DataBundle:
    """Load cfg.dataset (unless `data` is given) and split it as cfg says, with the split seed
    `split_seed(cfg)`: 0 by default, so that every trial of a study sees the same split; the
    trial's seed with split_seed None, so that the split varies with the seed."""
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir)
    elif data.name and data.name != cfg.dataset:
        raise ConfigError(
            f"dataset={cfg.dataset!r} but the data passed in is {data.name!r}; pass the "
            "matching DataBundle or data=None"
        )
    return split_data(
        data,
        train_subset=cfg.train_subset,
        test_subset=cfg.test_subset,
        val_fraction=cfg.val_fraction,
        seed=split_seed(cfg),
    )
