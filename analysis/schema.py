"""What the report needs of results.parquet / history.parquet, and how it names their columns.

The column names themselves are the writer's and the reader's contract, declared once in
`core.columns` (docs/results_schema.md describes them); this module holds only the reader's
own choices: which columns it cannot do without, the study kinds it knows, the config columns
that are not studied factors, and the human labels of metric columns.
"""

from __future__ import annotations

from core.columns import (
    ASHA_STOPPED,
    AVG,
    BATCHES_PER_S,
    BEST,
    CALIB_BATCHES_PER_S,
    CALIB_IMAGES_PER_S,
    CORRUPT_KEYS,
    CORRUPTIONS,
    DIVERGED,
    EARLY_STOPPED,
    EPOCH,
    EPOCH_AT_BEST_VAL,
    EPOCH_S,
    EPOCHS_DONE,
    FINAL,
    FINAL_TEST_ACC,
    FINAL_TEST_LOSS,
    FLOP_PER_S,
    IMAGES_PER_S,
    OOD_KEYS,
    OOD_SCORES,
    PARAMS,
    PEAK_MEMORY_MB,
    ROBUSTNESS_S,
    SEVERITIES,
    STATUS,
    TEST,
    TEST_ACC,
    TEST_ACC_AT_BEST_VAL,
    TEST_LOSS,
    TEST_LOSS_AT_BEST_VAL,
    TOTAL_S,
    TRAIN,
    TRAIN_FLOPS_PER_IMAGE,
    TRIAL_ID,
    VAL,
    corrupt_metric,
    ood_metric,
)

__all__ = [
    "HISTORY_REQUIRED",
    "NOT_SWEPT",
    "NUMERIC_REQUIRED",
    "RESULTS_REQUIRED",
    "STUDIES",
    "metric_label",
]

# Config columns that vary between trials without being a studied factor.
NOT_SWEPT = ("seed", "data_dir", "device", "num_threads")

# The study kinds the report has pages for (study.json's `study`, the results' `study` column),
# declared once: analysis.findings covers those of them it has a module for.
STUDIES = ("alpha_gamma", "ensemble_size", "optimizers", "sharing", "search", "methods")

# Without these the report cannot say anything; a figure's own columns are checked before it is
# built (its NEEDS: a missing one skips that figure with a note, it does not fail the report).
RESULTS_REQUIRED = (
    TRIAL_ID,
    STATUS,
    EPOCHS_DONE,
    DIVERGED,
    EARLY_STOPPED,
    ASHA_STOPPED,
    "seed",
    FINAL_TEST_ACC,
    FINAL_TEST_LOSS,
)
HISTORY_REQUIRED = (TRIAL_ID, EPOCH, TEST_ACC, TEST_LOSS)
# Required columns that must be numeric (where required).
NUMERIC_REQUIRED = (EPOCHS_DONE, FINAL_TEST_ACC, FINAL_TEST_LOSS, EPOCH, TEST_ACC)

# Labels of the evaluation metrics (core.columns.EVAL_KEYS), summary prefixes, splits and cost
# columns; tests/analysis/test_schema.py checks every name of core.columns has one.
_NAMES = {
    "acc": "accuracy",
    "loss": "loss (NLL)",
    "ece": "ECE",
    "brier": "Brier score",
    "member_acc": "member accuracy",
    "disagreement": "member disagreement",
    "kl": "member KL",
}
_PREFIX = {FINAL: "final", BEST: "best", AVG: "average"}
_SPLIT = {TEST: "test", VAL: "validation", TRAIN: "training"}
_COST = {
    PARAMS: "distinct parameters",
    BATCHES_PER_S: "batches/s",
    IMAGES_PER_S: "images/s",
    TRAIN_FLOPS_PER_IMAGE: "training FLOPs per image",
    FLOP_PER_S: "achieved FLOP/s (training)",
    PEAK_MEMORY_MB: "peak memory (MiB)",
    EPOCH_S: "seconds per epoch",
    TOTAL_S: "training time (s)",
    CALIB_BATCHES_PER_S: "batches/s (timed alone)",
    CALIB_IMAGES_PER_S: "images/s (timed alone)",
}


# Labels of the robustness metrics (core.columns.ROBUSTNESS_KEYS).
_OOD_KEY = {"auroc": "OOD AUROC", "fpr95": "OOD FPR at 95% TPR"}
_OOD_SCORE = {"msp": "max. softmax prob.", "entropy": "entropy", "mi": "mutual information"}
_ROBUSTNESS = {
    **{corrupt_metric(k): f"corrupted {_NAMES[k]}" for k in CORRUPT_KEYS},
    **{
        corrupt_metric(k, c, s): f"{_NAMES[k]} under {c.replace('_', ' ')} {s}"
        for c in CORRUPTIONS
        for s in SEVERITIES
        for k in CORRUPT_KEYS
    },
    **{ood_metric(k, s): f"{_OOD_KEY[k]} ({_OOD_SCORE[s]})" for k in OOD_KEYS for s in OOD_SCORES},
    ROBUSTNESS_S: "robustness evaluation time (s)",
}


# The test metrics at each trial's best validation epoch (what a val-selected trial scores).
_AT_BEST_VAL = {
    EPOCH_AT_BEST_VAL: "epoch of the best validation accuracy",
    TEST_ACC_AT_BEST_VAL: "val-selected test accuracy",
    TEST_LOSS_AT_BEST_VAL: "val-selected test loss (NLL)",
}


def metric_label(column: str) -> str:
    """Human label of a metric column, e.g. final_test_acc -> 'final test accuracy'."""
    if column in _AT_BEST_VAL:
        return _AT_BEST_VAL[column]
    if column in _COST:
        return _COST[column]
    if column in _ROBUSTNESS:
        return _ROBUSTNESS[column]
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
