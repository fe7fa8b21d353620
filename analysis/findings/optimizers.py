"""The optimizers study (findings/optimizers/): claim 1, BatchEnsemble against the single
network and the deep ensemble, and claim 5, IVON overfits."""

from __future__ import annotations

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
    comparison_line,
    fmt,
    stat_of,
    table,
)
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
    from core.cost import COST_FIELDS, config_flops_per_image

    if C.TRAIN_FLOPS_PER_IMAGE in row and pd.notna(row[C.TRAIN_FLOPS_PER_IMAGE]):
        return float(row[C.TRAIN_FLOPS_PER_IMAGE])
    fields = {f: row[f] for f in COST_FIELDS if f in row}  # older rows: no packed_* columns
    for f in ("ensemble_size", "ivon_train_samples", "batch_size", "packed_groups"):
        if f in fields:
            fields[f] = int(fields[f])
    classes = 20 if row.get("dataset") == "cifar20" else 10
    return config_flops_per_image(TrialConfig(**fields), classes)


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
    df = results(STUDY, root)
    lines = []
    for o in OPTIMIZERS:
        be, single = _model(df, "batch", 8, o), _model(df, "single", 1, o)
        for c in (ACC, NLL, ECE, CORRUPT_ACC, AUROC):
            m = METRICS[c]
            a, b = stat_of(df, be, c), stat_of(df, single, c)
            lines.append(comparison_line(f"{o}: batch x8 - single", a, b, m))
    be, deep = _model(df, "batch", 8, "adam"), _model(df, "deep", 8, "adam")
    for c in (ACC, NLL, ECE, CORRUPT_ACC, AUROC, DISAGREE):
        m = METRICS[c]
        # No direction is claimed against the deep ensemble: the line names the better one.
        a, b = stat_of(df, be, c), stat_of(df, deep, c)
        lines.append(comparison_line("adam: batch x8 - deep x8", a, b, m, None, ("batch", "deep")))
    return "\n".join(lines) + "\n"


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
    df = results(STUDY, root)
    lines = []
    for e, m in MODELS[:2]:
        label = e + (f" x{m}" if e != "single" else "")
        ivon = _model(df, e, m, "ivon")
        for other in ("adam", "sgd"):
            for c in (GAP, VAL_LOSS_RISE):
                # 'worse' for a lower-is-better gap: the claim is that IVON's gap is larger.
                lines.append(
                    comparison_line(
                        f"{label}: ivon - {other}",
                        stat_of(df, ivon, c),
                        stat_of(df, _model(df, e, m, other), c),
                        METRICS[c],
                        "worse",
                    )
                )
        a, b = stat_of(df, ivon, ECE), stat_of(df, _model(df, e, m, "adam"), ECE)
        lines.append(
            comparison_line(f"{label}: ivon - adam", a, b, METRICS[ECE], None, ("ivon", "adam"))
        )
    return "\n".join(lines) + "\n"


# The blocks of docs/findings.md made from this study.
BLOCKS = {
    "claim1_table": models_table,
    "claim1_verdicts": models_verdicts,
    "claim5_table": overfitting_table,
    "claim5_verdicts": overfitting_verdicts,
}
