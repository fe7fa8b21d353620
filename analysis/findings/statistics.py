"""The verdict rule of the findings and the tables of its numbers: the metrics (column, header,
scale, direction), a group's mean / sd / n, the difference of two groups against its standard
error, and the markdown of both (the package's docstring states the rule)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.tidy import is_usable
from core import columns as C

CONFIRMED, REFUTED, NOISE = "confirmed", "refuted", "not separable from seed noise"

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


METRICS = {
    m.column: m
    for m in (
        Metric(ACC, "test acc (%)", 100, 1),
        Metric(NLL, "NLL", 1, 3, False),
        Metric(ECE, "ECE", 1, 3, False),
        Metric(DISAGREE, "disagreement", 1, 3),
        Metric(CORRUPT_ACC, "corrupted acc (%)", 100, 1),
        Metric(AUROC, "OOD AUROC (MSP)", 1, 3),
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


def compare(a: Stat, b: Stat) -> tuple[float, float]:
    """(a.mean - b.mean, its standard error); the se is NaN with fewer than 2 values a side."""
    return a.mean - b.mean, math.sqrt(a.sd**2 / a.n + b.sd**2 / b.n) if min(
        a.n, b.n
    ) > 1 else math.nan


def verdict(diff: float, se: float, claimed_positive: bool = True) -> str:
    """CONFIRMED when diff is more than 2 se on the claimed side, REFUTED on the other."""
    if not (math.isfinite(diff) and math.isfinite(se)) or abs(diff) <= 2 * se:
        return NOISE
    return CONFIRMED if (diff > 0) == claimed_positive else REFUTED


def fmt(x: float, m: Metric, sign: bool = False) -> str:
    if not math.isfinite(x):
        return "-"
    return f"{x * m.scale:{'+' if sign else ''}.{m.decimals}f}"


def fmt_stat(s: Stat, m: Metric) -> str:
    if s.n == 0:
        return "-"
    sd = f" ± {fmt(s.sd, m)}" if math.isfinite(s.sd) else ""
    return f"{fmt(s.mean, m)}{sd}"


def comparison_line(
    what: str,
    a: Stat,
    b: Stat,
    m: Metric,
    claim: str | None = "better",
    names: tuple[str, str] = ("a", "b"),
) -> str:
    """One verdict line: 'what, metric: +3.1 pp (2 se = 1.6): confirmed'. `claim` is what the
    claim says of a against b: 'better' (higher, or lower for a lower-is-better metric),
    'worse', or None for no direction claimed (the verdict then names the better of `names`)."""
    diff, se = compare(a, b)
    unit = " pp" if m.scale == 100 else ""
    better = (diff > 0) == m.higher_better
    if claim is None:
        v = verdict(diff, se)
        v = v if v == NOISE else f"{names[0] if better else names[1]} better"
    else:
        v = verdict(diff, se, (claim == "better") == m.higher_better)
    head = f"- {what}, {m.header}: {fmt(diff, m, sign=True)}{unit}"
    return f"{head} (2 se = {fmt(2 * se, m)}{unit}): {v}"


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
