"""One sentence per metric the report shows, and which direction is better, declared once.

The names are core.columns' (EVAL_KEYS, the corrupted means' key, OOD_KEYS); the meanings follow
docs/results_schema.md, shortened for a reader of the report (the overview page lists them).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.columns import (
    EVAL_KEYS,
    OOD_KEYS,
    OOD_SCORES,
    TEST_ACC,
    TEST_ACC_AT_BEST_VAL,
    corrupt_metric,
    ood_metric,
)

AT_BEST_VAL = TEST_ACC_AT_BEST_VAL.removeprefix(f"{TEST_ACC}_")  # the columns' shared suffix

HIGHER, LOWER, NEITHER = "higher is better", "lower is better", "neither direction is better"


@dataclass(frozen=True)
class Definition:
    name: str  # what the report calls it
    meaning: str  # one sentence
    better: str  # HIGHER, LOWER or NEITHER


# Per evaluation key (core.columns.EVAL_KEYS): each is measured on the test and validation splits.
EVAL_DEFINITIONS = {
    "acc": Definition(
        "accuracy",
        "Share of images whose ensemble prediction (the mean of the member probabilities) is "
        "the true class.",
        HIGHER,
    ),
    "loss": Definition(
        "NLL",
        "Negative log-likelihood (natural log) of the true class under the ensemble "
        "prediction, averaged over images: it punishes confident mistakes.",
        LOWER,
    ),
    "ece": Definition(
        "ECE",
        "Expected calibration error: the gap between confidence and accuracy, averaged over "
        "15 equal-width confidence bins weighted by their share of images.",
        LOWER,
    ),
    "brier": Definition(
        "Brier score",
        "Squared error of the predicted probabilities against the one-hot true class, summed "
        "over classes and averaged over images.",
        LOWER,
    ),
    "member_acc": Definition(
        "member accuracy",
        "Mean accuracy of the individual members (the ensemble's accuracy minus this is what "
        "ensembling adds).",
        HIGHER,
    ),
    "disagreement": Definition(
        "disagreement",
        "Mean over member pairs of the share of images on which their top classes differ (0 "
        "for one member): diversity, good only when it comes with accuracy.",
        NEITHER,
    ),
    "kl": Definition(
        "pairwise KL",
        "Mean over ordered member pairs of KL(p_m || p_n) between their predicted "
        "distributions (0 for one member): diversity, good only when it comes with accuracy.",
        NEITHER,
    ),
}
assert tuple(EVAL_DEFINITIONS) == EVAL_KEYS

# Robustness: the corrupted means and the OOD detection scores (core.columns.ROBUSTNESS_KEYS).
ROBUSTNESS_DEFINITIONS = {
    corrupt_metric("acc"): Definition(
        "corrupted accuracy",
        "Accuracy on the test images corrupted on the fly (CIFAR-10-C style: noise, blur, "
        "brightness, contrast, pixelate, JPEG), averaged over the corruptions and severities "
        "1 to 5.",
        HIGHER,
    ),
    ood_metric("auroc", "msp"): Definition(
        "OOD AUROC",
        "Area under the ROC curve of telling the clean test images from out-of-distribution "
        "images by a confidence score (max. softmax probability, minus entropy, minus mutual "
        "information); 0.5 is chance.",
        HIGHER,
    ),
    ood_metric("fpr95", "msp"): Definition(
        "OOD FPR95",
        "Share of out-of-distribution images accepted at the threshold that accepts 95% of "
        "the clean test images.",
        LOWER,
    ),
}

DEFINITIONS = {**EVAL_DEFINITIONS, **ROBUSTNESS_DEFINITIONS}


def definition_of(column: str) -> Definition | None:
    """The definition of a metric column: final_test_acc -> accuracy, corrupt_acc -> corrupted
    accuracy, ood_auroc_mi -> OOD AUROC (every score shares its key's definition)."""
    column = column.removesuffix(f"_{AT_BEST_VAL}")  # test_acc_at_best_val: an accuracy
    if column in DEFINITIONS:
        return DEFINITIONS[column]
    for key in OOD_KEYS:
        if any(column == ood_metric(key, s) for s in OOD_SCORES):
            return DEFINITIONS[ood_metric(key, "msp")]
    for key in sorted(EVAL_KEYS, key=len, reverse=True):  # member_acc before acc
        if column.endswith(f"_{key}"):
            return EVAL_DEFINITIONS[key]
    return None


def better(column: str) -> str | None:
    """HIGHER, LOWER or NEITHER for a metric column; None when it has no definition."""
    d = definition_of(column)
    return d.better if d is not None else None
