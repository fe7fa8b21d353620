"""The optimizers study (findings/optimizers/): claim 1, BatchEnsemble against the single
network and the deep ensemble, and claim 5, IVON overfits."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pandas as pd

from analysis.findings.data import FINDINGS, results, rows_where
from analysis.findings.statistics import (
    ACC,
    AUROC,
    CORRUPT_ACC,
    DISAGREE,
    ECE,
    GAP,
    METRICS,
    NLL,
    TRAIN_ACC,
    VAL_ACC,
    VAL_LOSS_RISE,
    fmt,
    stat_of,
    table,
)
from analysis.findings.verdicts import block, compare, family
from analysis.tidy import UNUSABLE
from core import columns as C
from core.config import OPTIMIZERS, TrialConfig

STUDY = "optimizers"
PICTURE_PAGE = "optimizers"  # the report page docs/findings/optimizers.png is a screenshot of

# The models of the study (its rows, with each of core.config's OPTIMIZERS): (ensemble, size).
MODELS = (("single", 1), ("batch", 8), ("deep", 8))
MODELS_COLUMNS = (ACC, NLL, ECE, DISAGREE, CORRUPT_ACC, AUROC)
OVERFITTING_COLUMNS = (TRAIN_ACC, VAL_ACC, GAP, VAL_LOSS_RISE, C.EPOCH_AT_BEST_VAL, NLL, ECE)


def _model(df: pd.DataFrame, ensemble: str, size: int, optimizer: str) -> pd.Series:
    return rows_where(df, ensemble=ensemble, ensemble_size=size, optimizer=optimizer)


def flops_per_image(row: pd.Series) -> float:
    """Training FLOPs per image of a results row's model (core.cost), from its config: the
    studies run before the cost columns existed lack `train_flops_per_image`."""
    from core.cost import COST_FIELDS

    if C.TRAIN_FLOPS_PER_IMAGE in row and pd.notna(row[C.TRAIN_FLOPS_PER_IMAGE]):
        return float(row[C.TRAIN_FLOPS_PER_IMAGE])
    fields = {f: row[f] for f in COST_FIELDS if f in row}  # older rows: no packed_* columns
    for f in ("ensemble_size", "ivon_train_samples", "batch_size", "packed_groups"):
        if f in fields:
            fields[f] = int(fields[f])
    classes = 20 if row.get("dataset") == "cifar20" else 10
    return _counted(tuple(sorted(fields.items())), classes)


@functools.lru_cache(maxsize=64)
def _counted(fields: tuple[tuple[str, object], ...], classes: int) -> float:
    """FLOPs per image of one model, counted once per process (each rendering of the document
    asks again; counting builds the model and runs torch's flop counter)."""
    from core.cost import config_flops_per_image

    return config_flops_per_image(TrialConfig(**dict(fields)), classes)


# --- claim 1: BatchEnsemble against the single network and the deep ensemble -------------------


def models_table(root: Path = FINDINGS) -> str:
    df = results(STUDY, root)
    rows = [
        (f"{o}, {e}" + (f" x{m}" if e != "single" else ""), _model(df, e, m, o))
        for o in OPTIMIZERS
        for e, m in MODELS
        if _model(df, e, m, o).any()
    ]
    out = table(rows, df, MODELS_COLUMNS, "optimizer, model")
    cost = [(label, mask) for label, mask in rows if label.startswith("adam")]
    lines = [
        "",
        "| Adam | distinct parameters | training MFLOPs per image | images/s (trial's own, "
        "2 trials per node) | n |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, mask in cost:
        p = stat_of(df, mask, C.PARAMS)
        ips = stat_of(df, mask, C.IMAGES_PER_S)
        mflops = flops_per_image(df[mask].iloc[0]) / 1e6
        lines.append(
            f"| {label} | {p.mean:,.0f} | {mflops:,.1f} | {ips.mean:,.0f} ± {ips.sd:,.0f} "
            f"| {ips.n} |"
        )
    return out + "\n".join(lines) + "\n"


def models_verdicts(root: Path = FINDINGS) -> str:
    """Two families, each paired by seed: the BatchEnsemble against the single network with
    each optimizer (the claim: better), and against the deep ensemble with Adam (no direction
    claimed: the line names the better)."""
    df = results(STUDY, root)
    single = [
        compare(
            df, _model(df, "batch", 8, o), _model(df, "single", 1, o), c, f"{o}: batch x8 - single"
        )
        for o in OPTIMIZERS
        for c in (ACC, NLL, ECE, CORRUPT_ACC, AUROC)
    ]
    be, deep = _model(df, "batch", 8, "adam"), _model(df, "deep", 8, "adam")
    against_deep = [
        compare(df, be, deep, c, "adam: batch x8 - deep x8", None, ("batch", "deep"))
        for c in (ACC, NLL, ECE, CORRUPT_ACC, AUROC, DISAGREE)
    ]
    return block(
        family("BatchEnsemble x8 against the single network", single),
        family("BatchEnsemble x8 against the deep ensemble x8", against_deep),
    )


# --- claim 5: IVON overfits ---------------------------------------------------------------------


def overfitting_table(root: Path = FINDINGS) -> str:
    df = results(STUDY, root)
    rows = [
        (f"{e}" + (f" x{m}" if e != "single" else "") + f", {o}", _model(df, e, m, o))
        for e, m in MODELS[:2]
        for o in OPTIMIZERS
    ]
    out = table(rows, df, OVERFITTING_COLUMNS, "model, optimizer")
    hist = pd.read_parquet(root / STUDY / C.HISTORY_FILE)
    hist = hist.merge(
        df[[C.TRIAL_ID, "ensemble", "ensemble_size", "optimizer", "outcome"]], on=C.TRIAL_ID
    )
    hist = hist[~hist["outcome"].isin(UNUSABLE)]
    hist[GAP] = hist[C.split_metric(C.TRAIN, "acc")] - hist[C.VAL_ACC]
    epochs = sorted(hist[C.EPOCH].unique())
    lines = [
        "",
        "| train - val accuracy (pp), mean over seeds | "
        + " | ".join(f"ep {int(e)}" for e in epochs)
        + " |",
        "|" + " --- |" * (len(epochs) + 1),
    ]
    for label, mask in rows:
        ids = set(df.loc[mask, C.TRIAL_ID])
        g = hist[hist[C.TRIAL_ID].isin(ids)].groupby(C.EPOCH)[GAP].mean()
        lines.append(
            f"| {label} | "
            + " | ".join(fmt(g.get(e, math.nan), METRICS[GAP]) for e in epochs)
            + " |"
        )
    return out + "\n".join(lines) + "\n"


def overfitting_verdicts(root: Path = FINDINGS) -> str:
    """One family, paired by seed: IVON against Adam and SGD on each model, in the gap and the
    rise of validation NLL (the claim: IVON's are larger, 'worse' for these lower-is-better
    columns), and IVON's ECE against Adam's (no direction claimed)."""
    df = results(STUDY, root)
    tests = []
    for e, m in MODELS[:2]:
        label = e + (f" x{m}" if e != "single" else "")
        ivon = _model(df, e, m, "ivon")
        for other in ("adam", "sgd"):
            tests += [
                compare(df, ivon, _model(df, e, m, other), c, f"{label}: ivon - {other}", "worse")
                for c in (GAP, VAL_LOSS_RISE)
            ]
        tests.append(
            compare(
                df,
                ivon,
                _model(df, e, m, "adam"),
                ECE,
                f"{label}: ivon - adam",
                None,
                ("ivon", "adam"),
            )
        )
    return block(family("IVON overfits more than Adam and SGD", tests))


# The blocks of docs/findings.md made from this study.
BLOCKS = {
    "claim1_table": models_table,
    "claim1_verdicts": models_verdicts,
    "claim5_table": overfitting_table,
    "claim5_verdicts": overfitting_verdicts,
}
