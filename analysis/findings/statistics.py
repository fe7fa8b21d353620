"""The metrics of the findings and the markdown of their numbers: the metrics (column, header,
scale, direction, equivalence margin), a group's mean / sd / n, the tables, and the verdict
lines of a family of comparisons (the tests themselves are `inference`'s; the package's
docstring states the method)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.tidy import is_usable
from core import columns as C

CONFIRMED, REFUTED, NOISE = "confirmed", "refuted", "not separable from seed noise"
EQUIVALENT, NOT_EQUIVALENT = "equivalent", "not shown equivalent"

# The metrics of the tables: column, header, scale, decimals, higher is better.
ACC = C.FINAL_TEST_ACC
NLL = C.FINAL_TEST_LOSS
ECE = C.summary_column(C.FINAL, C.split_metric(C.TEST, "ece"))
DISAGREE = C.summary_column(C.FINAL, C.split_metric(C.TEST, "disagreement"))
CORRUPT_ACC = C.corrupt_metric("acc")
AUROC = C.ood_metric("auroc", "msp")
TRAIN_ACC = C.summary_column(C.FINAL, C.split_metric(C.TRAIN, "acc"))
VAL_ACC = C.FINAL_VAL_ACC
VAL_LOSS = C.summary_column(C.FINAL, C.split_metric(C.VAL, "loss"))
BEST_VAL_LOSS = C.summary_column(C.BEST, C.split_metric(C.VAL, "loss"))
GAP = "train_val_gap"  # final train - final validation accuracy (data.results)
VAL_LOSS_RISE = "val_loss_rise"  # final - lowest validation NLL (data.results)


@dataclass(frozen=True)
class Metric:
    column: str
    header: str
    scale: float = 1.0  # 100: shown in percent (and differences in percentage points)
    decimals: int = 3
    higher_better: bool = True
    # The equivalence margin in the metric's own units (0.01: 1 pp of accuracy): a difference
    # smaller than this is what "costs little", "close" or "flattens" means (package docstring).
    margin: float = math.nan


METRICS = {
    m.column: m
    for m in (
        Metric(ACC, "test acc (%)", 100, 1, margin=0.01),
        Metric(NLL, "NLL", 1, 3, False, margin=0.03),
        Metric(ECE, "ECE", 1, 3, False, margin=0.01),
        Metric(DISAGREE, "disagreement", 1, 3),
        Metric(CORRUPT_ACC, "corrupted acc (%)", 100, 1, margin=0.01),
        Metric(AUROC, "OOD AUROC (MSP)", 1, 3, margin=0.02),
        Metric(TRAIN_ACC, "train acc (%)", 100, 1),
        Metric(VAL_ACC, "val acc (%)", 100, 1),
        Metric(GAP, "train - val (pp)", 100, 1, False),
        Metric(VAL_LOSS_RISE, "val NLL rise", 1, 3, False),
        Metric(C.EPOCH_AT_BEST_VAL, "epoch of best val acc", 1, 1),
    )
}


@dataclass(frozen=True)
class Stat:
    """Mean, sample sd (ddof 1) and n of one group's values."""

    mean: float
    sd: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float] | pd.Series) -> Stat:
        v = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(float)
        if len(v) == 0:
            return cls(math.nan, math.nan, 0)
        return cls(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v))


def fmt(x: float, m: Metric, sign: bool = False) -> str:
    if not math.isfinite(x):
        return "-"
    return f"{x * m.scale:{'+' if sign else ''}.{m.decimals}f}"


def fmt_stat(s: Stat, m: Metric) -> str:
    if s.n == 0:
        return "-"
    sd = f" ± {fmt(s.sd, m)}" if math.isfinite(s.sd) else ""
    return f"{fmt(s.mean, m)}{sd}"


def stat_of(df: pd.DataFrame, mask: pd.Series | np.ndarray, column: str) -> Stat:
    ok = is_usable(df, column) if column in df else pd.Series(False, index=df.index)
    return Stat.of(df.loc[np.asarray(mask) & ok, column]) if column in df else Stat.of([])


def table(
    rows: list[tuple[str, pd.Series]], df: pd.DataFrame, columns: Sequence[str], first: str
) -> str:
    """Markdown: one row per (label, mask), mean ± sd per column, n (the fewest trials of a
    row's columns)."""
    cols = [c for c in columns if c in df]
    lines = [
        "| " + " | ".join([first, *(METRICS[c].header for c in cols), "n"]) + " |",
        "|" + " --- |" * (len(cols) + 2),
    ]
    for label, mask in rows:
        stats = [stat_of(df, mask, c) for c in cols]
        n = min((s.n for s in stats), default=0)
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    *(fmt_stat(s, METRICS[c]) for s, c in zip(stats, cols, strict=True)),
                    str(n),
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"
