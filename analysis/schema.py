"""Column names of results.parquet / history.parquet (see docs/results_schema.md)."""

from __future__ import annotations

import dataclasses

from core.config import ENSEMBLES, FAST_WEIGHT_SWEEP, OPTIMIZERS, SHARING, TrialConfig

__all__ = [
    "CONFIG_COLUMNS",
    "COST_METRICS",
    "ENSEMBLES",
    "EPOCH_METRICS",
    "FAST_WEIGHT_SWEEP",
    "HISTORY_REQUIRED",
    "NOT_SWEPT",
    "OPTIMIZERS",
    "RESULTS_REQUIRED",
    "SHARING",
    "STUDIES",
    "metric_label",
]

# Every TrialConfig field is a column of both tables (`extra` is flattened to extra_<key>).
CONFIG_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(TrialConfig) if f.name != "extra"
)
# Config columns that vary between trials without being a studied factor.
NOT_SWEPT = ("seed", "data_dir", "device", "num_threads")

_SEVEN = ("acc", "loss", "ece", "brier", "member_acc", "disagreement", "kl")
EPOCH_METRICS: tuple[str, ...] = (
    ("train_loss", "train_acc")
    + tuple(f"test_{m}" for m in _SEVEN)
    + tuple(f"val_{m}" for m in _SEVEN)
)
# Measurements of cost, valid even when training diverged (only NaN is excluded).
COST_METRICS = ("params", "batches_per_s", "images_per_s", "epoch_s", "total_s")

STUDIES = ("alpha_gamma", "ensemble_size", "optimizers", "sharing", "search")

# Without these the report cannot say anything; a figure's own columns are checked by the
# figure (a missing one skips that figure with a note, it does not fail the report).
RESULTS_REQUIRED = (
    "trial_id",
    "status",
    "epochs_done",
    "diverged",
    "early_stopped",
    "asha_stopped",
    "seed",
    "final_test_acc",
    "final_test_loss",
)
HISTORY_REQUIRED = ("trial_id", "epoch", "test_acc", "test_loss")

_NAMES = {
    "acc": "accuracy",
    "loss": "loss (NLL)",
    "ece": "ECE",
    "brier": "Brier score",
    "member_acc": "member accuracy",
    "disagreement": "member disagreement",
    "kl": "member KL",
}
_PREFIX = {"final": "final", "best": "best", "avg": "average"}
_SPLIT = {"test": "test", "val": "validation", "train": "training"}
_COST = {
    "params": "distinct parameters",
    "batches_per_s": "batches/s",
    "images_per_s": "images/s",
    "epoch_s": "seconds per epoch",
    "total_s": "training time (s)",
}


def metric_label(column: str) -> str:
    """Human label of a metric column, e.g. final_test_acc -> 'final test accuracy'."""
    if column in _COST:
        return _COST[column]
    parts = column.split("_", 1)
    words = []
    if parts[0] in _PREFIX and len(parts) == 2:
        words.append(_PREFIX[parts[0]])
        column = parts[1]
    split, _, name = column.partition("_")
    if split in _SPLIT and name in _NAMES:
        words += [_SPLIT[split], _NAMES[name]]
    else:
        words.append(column.replace("_", " "))
    return " ".join(words)
