"""The findings: each claim of the student study tested on the committed `findings/<study>/`.

    python -m analysis.findings             # rewrite docs/findings.md's generated blocks
    python -m analysis.findings --check     # exit 1 when a block differs from the data
    python -m analysis.findings --pictures  # also redraw docs/findings/*.png (needs chromium)

Every number of docs/findings.md sits in a generated block, between
`<!-- findings:NAME -->` and `<!-- /findings -->`, made here from the committed parquet files;
tests/analysis/test_findings.py checks that each block equals what this module computes, so
the document cannot drift from its data. The prose around the blocks says what they mean.

The verdict rule, one for every comparison: the difference of two groups' means (over seeds,
diverged and errored trials left out) against its standard error,
se = sqrt(sd_a^2 / n_a + sd_b^2 / n_b). A difference larger than twice its standard error is
separable from seed noise, and the claim is *confirmed* or *refuted* by its sign; otherwise it
is *not separable from seed noise at this scale*.
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.tidy import UNUSABLE, is_usable, tidy_results
from core import columns as C

REPO = Path(__file__).resolve().parents[1]
FINDINGS = REPO / "findings"
DOC = REPO / "docs" / "findings.md"
PICTURES = REPO / "docs" / "findings"
STUDIES = ("optimizers", "alpha_gamma", "ensemble_size", "sharing")

CONFIRMED, REFUTED, NOISE = "confirmed", "refuted", "not separable from seed noise"
BLOCK = re.compile(r"<!-- findings:([a-z0-9_]+) -->\n(.*?)<!-- /findings -->", re.S)

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
GAP = "train_val_gap"  # final train accuracy - final validation accuracy (computed here)
VAL_LOSS_RISE = "val_loss_rise"  # final - lowest validation NLL (computed here)


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


# --- data -------------------------------------------------------------------------------------


def results(study: str, root: Path = FINDINGS) -> pd.DataFrame:
    """The tidy results of findings/<study>/, with the columns computed here."""
    df = tidy_results(pd.read_parquet(root / study / C.RESULTS_FILE))
    if TRAIN_ACC in df and VAL_ACC in df:
        df[GAP] = df[TRAIN_ACC] - df[VAL_ACC]
    if VAL_LOSS in df and BEST_VAL_LOSS in df:
        df[VAL_LOSS_RISE] = df[VAL_LOSS] - df[BEST_VAL_LOSS]
    return df


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


def flops_per_image(row: pd.Series) -> float:
    """Training FLOPs per image of a results row's model (core.cost), from its config: the
    studies run before the cost columns existed lack `train_flops_per_image`."""
    from core.config import TrialConfig
    from core.cost import COST_FIELDS, config_flops_per_image

    if C.TRAIN_FLOPS_PER_IMAGE in row and pd.notna(row[C.TRAIN_FLOPS_PER_IMAGE]):
        return float(row[C.TRAIN_FLOPS_PER_IMAGE])
    fields = {f: row[f] for f in COST_FIELDS}
    for f in ("ensemble_size", "ivon_train_samples", "batch_size"):
        fields[f] = int(fields[f])
    classes = 20 if row.get("dataset") == "cifar20" else 10
    return config_flops_per_image(TrialConfig(**fields), classes)


def first_value(df: pd.DataFrame, mask: pd.Series, column: str) -> float:
    v = pd.to_numeric(df.loc[mask, column], errors="coerce").dropna()
    return float(v.iloc[0]) if len(v) else math.nan


def is_(df: pd.DataFrame, **values: object) -> pd.Series:
    """Rows whose columns equal `values` (numbers compared to float tolerance)."""
    mask = pd.Series(True, index=df.index)
    for k, v in values.items():
        if isinstance(v, float | int) and not isinstance(v, bool):
            mask &= np.isclose(pd.to_numeric(df[k], errors="coerce"), float(v))
        else:
            mask &= df[k].astype(object).eq(v)
    return mask


# --- claim 1: BatchEnsemble against the single network and the deep ensemble -------------------

MODELS = (("single", 1), ("batch", 8), ("deep", 8))
OPTIMIZERS = ("adam", "sgd", "ivon")
CLAIM1_COLUMNS = (ACC, NLL, ECE, DISAGREE, CORRUPT_ACC, AUROC)


def _model(df: pd.DataFrame, ensemble: str, size: int, optimizer: str) -> pd.Series:
    return is_(df, ensemble=ensemble, ensemble_size=size, optimizer=optimizer)


def claim1_table(root: Path = FINDINGS) -> str:
    df = results("optimizers", root)
    rows = [
        (f"{o}, {e}" + (f" x{m}" if e != "single" else ""), _model(df, e, m, o))
        for o in OPTIMIZERS
        for e, m in MODELS
        if _model(df, e, m, o).any()
    ]
    out = table(rows, df, CLAIM1_COLUMNS, "optimizer, model")
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


def claim1_verdicts(root: Path = FINDINGS) -> str:
    df = results("optimizers", root)
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


# --- claim 2: alpha x gamma ---------------------------------------------------------------------

MIDDLE = (0.2, 0.8)  # the claim's range of alpha or gamma
# Fast-weight inits with which every member starts with the same factor: 0 (ones) and 1
# (random signs with P(+1) = 1); core.layers' init.
IDENTICAL = (0.0, 1.0)


def _values(df: pd.DataFrame, column: str) -> list[float]:
    return sorted(pd.to_numeric(df[column], errors="coerce").dropna().unique().tolist())


def _cell_means(df: pd.DataFrame, column: str) -> pd.DataFrame:
    ok = df[is_usable(df, column)]
    return ok.groupby(["alpha", "gamma"])[column].mean().reset_index()


def claim2_grid(root: Path = FINDINGS) -> str:
    df = results("alpha_gamma", root)
    gammas = _values(df, "gamma")
    m = METRICS[ACC]
    lines = [
        "| alpha (rows), gamma (columns) | " + " | ".join(f"{g:g}" for g in gammas) + " |",
        "|" + " --- |" * (len(gammas) + 1),
    ]
    for a in _values(df, "alpha"):
        cells = [fmt_stat(stat_of(df, is_(df, alpha=a, gamma=g), ACC), m) for g in gammas]
        lines.append(f"| {a:g} | " + " | ".join(cells) + " |")
    n = sorted(
        {
            stat_of(df, is_(df, alpha=a, gamma=g), ACC).n
            for a in _values(df, "alpha")
            for g in gammas
        }
    )
    lines.append("")
    lines.append(f"Test accuracy (%), mean ± sd over {'/'.join(map(str, n))} seeds per cell.")
    return "\n".join(lines) + "\n"


def claim2_margins(root: Path = FINDINGS) -> str:
    df = results("alpha_gamma", root)
    rows = [(f"alpha = {a:g}", is_(df, alpha=a)) for a in _values(df, "alpha")]
    rows += [(f"gamma = {g:g}", is_(df, gamma=g)) for g in _values(df, "gamma")]
    return table(rows, df, (ACC, NLL, ECE, DISAGREE), "cells with")


def _best_cell(df: pd.DataFrame, mask: pd.Series) -> tuple[float, float]:
    """The (alpha, gamma) of the highest mean validation accuracy among `mask`'s cells."""
    cells = _cell_means(df[mask], VAL_ACC)
    best = cells.loc[cells[VAL_ACC].idxmax()]
    return float(best["alpha"]), float(best["gamma"])


def claim2_verdicts(root: Path = FINDINGS) -> str:
    df = results("alpha_gamma", root)
    lo, hi = MIDDLE
    a, g = pd.to_numeric(df["alpha"]), pd.to_numeric(df["gamma"])
    middle = a.between(lo, hi) | g.between(lo, hi)
    ba, bg = _best_cell(df, pd.Series(True, index=df.index))
    ia, ig = _best_cell(df, middle)
    oa, og = _best_cell(df, ~middle)
    m = METRICS[ACC]
    inside, outside = (
        stat_of(df, is_(df, alpha=ia, gamma=ig), ACC),
        stat_of(df, is_(df, alpha=oa, gamma=og), ACC),
    )
    where = "alpha or gamma" if (lo <= ba <= hi or lo <= bg <= hi) else "neither"
    lines = [
        f"- best cell by validation accuracy: alpha = {ba:g}, gamma = {bg:g} "
        f"({where} in {lo:g}-{hi:g}); "
        f"its test accuracy {fmt_stat(stat_of(df, is_(df, alpha=ba, gamma=bg), ACC), m)} %",
        comparison_line(
            f"best cell with alpha or gamma in {lo:g}-{hi:g} ({ia:g}, {ig:g}) - "
            f"best cell with neither ({oa:g}, {og:g})",
            inside,
            outside,
            m,
        ),
    ]
    spread = {}
    for col in ("alpha", "gamma"):
        means = [stat_of(df, is_(df, **{col: v}), ACC) for v in _values(df, col)]
        top, bottom = max(means, key=lambda s: s.mean), min(means, key=lambda s: s.mean)
        spread[col] = (top, bottom)
        lines.append(
            comparison_line(f"{col}: best - worst value (over the other)", top, bottom, m, "better")
        )
    same = a.isin(IDENTICAL) & g.isin(IDENTICAL)
    d = METRICS[DISAGREE]
    lines.append(
        comparison_line(
            "cells whose members start alike (alpha and gamma in {0, 1}) - the others",
            stat_of(df, same, DISAGREE),
            stat_of(df, ~same, DISAGREE),
            d,
            "worse",
        )
    )
    lines.append(
        comparison_line(
            "the same two groups", stat_of(df, same, ACC), stat_of(df, ~same, ACC), m, "worse"
        )
    )
    return "\n".join(lines) + "\n"


# --- claim 3: ensemble size and learning rate ---------------------------------------------------


def claim3_table(root: Path = FINDINGS) -> str:
    df = results("ensemble_size", root)
    lrs, sizes = _values(df, "lr"), _values(df, "ensemble_size")
    m = METRICS[ACC]
    lines = [
        "| members | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
        "|" + " --- |" * (len(lrs) + 1),
    ]
    for k in sizes:
        cells = [fmt_stat(stat_of(df, is_(df, ensemble_size=k, lr=lr), ACC), m) for lr in lrs]
        lines.append(f"| {k:g} | " + " | ".join(cells) + " |")
    n = sorted({stat_of(df, is_(df, ensemble_size=k, lr=lr), ACC).n for k in sizes for lr in lrs})
    out = (
        "\n".join(lines)
        + f"\n\nTest accuracy (%), mean ± sd over {'/'.join(map(str, n))} seeds per cell.\n\n"
    )
    rows = [(f"lr {lr:g}, all sizes", is_(df, lr=lr)) for lr in lrs]
    return out + table(rows, df, (ACC, NLL, ECE, DISAGREE), "pooled")


def claim3_verdicts(root: Path = FINDINGS) -> str:
    df = results("ensemble_size", root)
    lrs, sizes = _values(df, "lr"), _values(df, "ensemble_size")
    m = METRICS[ACC]
    lines = []
    for lr in lrs:
        s = {k: stat_of(df, is_(df, ensemble_size=k, lr=lr), ACC) for k in sizes}
        first, last = sizes[:2], sizes[-2:]
        lines.append(
            comparison_line(
                f"lr {lr:g}: {first[1]:g} - {first[0]:g} members", s[first[1]], s[first[0]], m
            )
        )
        # Flattening: the last step's gain is what the claim says is small; 'better' here
        # would mean it still grows.
        lines.append(
            comparison_line(
                f"lr {lr:g}: {last[1]:g} - {last[0]:g} members", s[last[1]], s[last[0]], m
            )
        )
        lines.append(
            comparison_line(
                f"lr {lr:g}: {sizes[-1]:g} - {sizes[0]:g} members", s[sizes[-1]], s[sizes[0]], m
            )
        )
    pooled = {lr: stat_of(df, is_(df, lr=lr), ACC) for lr in lrs}
    big = max(lrs)
    for lr in lrs:
        if lr != big:
            lines.append(
                comparison_line(
                    f"lr {lr:g} - lr {big:g} (all sizes pooled)", pooled[lr], pooled[big], m
                )
            )
    small = sorted(lr for lr in lrs if lr != big)
    if len(small) == 2:
        a, b = pooled[small[1]], pooled[small[0]]
        lines.append(
            comparison_line(
                f"lr {small[1]:g} - lr {small[0]:g} (all sizes pooled; the claim: close)",
                a,
                b,
                m,
                None,
                (f"{small[1]:g}", f"{small[0]:g}"),
            )
        )
    for c in (NLL, ECE):
        lines.append(
            comparison_line(
                f"lr {small[-1]:g} - lr {big:g} (all sizes pooled)",
                stat_of(df, is_(df, lr=small[-1]), c),
                stat_of(df, is_(df, lr=big), c),
                METRICS[c],
            )
        )
    return "\n".join(lines) + "\n"


# --- claim 4: parameter sharing -----------------------------------------------------------------

SHARING_COLUMNS = (ACC, NLL, ECE, CORRUPT_ACC, AUROC)
# The comparisons of the claim: (what, a, b) as (sharing_network, sharing_ensemble) pairs.
SHARING_PAIRS = (
    ("within the network", ("early", "none"), ("deep", "none")),
    ("within the ensemble", ("none", "early"), ("none", "deep")),
    ("both", ("early", "early"), ("deep", "deep")),
)


def _regime(df: pd.DataFrame, pair: tuple[str, str]) -> pd.Series:
    return is_(df, sharing_network=pair[0], sharing_ensemble=pair[1])


def _regimes(df: pd.DataFrame) -> list[tuple[str, str]]:
    order = ("none", "early", "deep", "all")
    pairs = {(n, e) for n, e in zip(df["sharing_network"], df["sharing_ensemble"], strict=True)}
    return sorted(pairs, key=lambda p: (order.index(p[0]), order.index(p[1])))


def claim4_table(root: Path = FINDINGS) -> str:
    df = results("sharing", root)
    rows = [(f"{n} / {e}", _regime(df, (n, e))) for n, e in _regimes(df)]
    out = table(rows, df, SHARING_COLUMNS, "network / ensemble")
    lines = [
        "",
        "| network / ensemble | distinct parameters | images/s timed alone |",
        "| --- | --- | --- |",
    ]
    for label, mask in rows:
        p = first_value(df, mask, C.PARAMS)
        ips = first_value(df, mask, C.CALIB_IMAGES_PER_S)
        lines.append(f"| {label} | {p:,.0f} | {ips:,.0f} |")
    return out + "\n".join(lines) + "\n"


def claim4_verdicts(root: Path = FINDINGS) -> str:
    df = results("sharing", root)
    none = _regime(df, ("none", "none"))
    lines = []
    for what, early, deep in SHARING_PAIRS:
        for pair in (deep, early):
            for c in (ACC, CORRUPT_ACC, NLL):
                m = METRICS[c]
                lines.append(
                    comparison_line(
                        f"{what}: {pair[0]} / {pair[1]} - none / none",
                        stat_of(df, _regime(df, pair), c),
                        stat_of(df, none, c),
                        m,
                        None,  # "costs little" has no direction: the line names the better
                        (f"{pair[0]} / {pair[1]}", "none / none"),
                    )
                )
        for c in (ACC, CORRUPT_ACC):
            lines.append(
                comparison_line(
                    f"{what}: early - deep sharing",
                    stat_of(df, _regime(df, early), c),
                    stat_of(df, _regime(df, deep), c),
                    METRICS[c],
                    "worse",
                )
            )
        t = {
            p: first_value(df, _regime(df, p), C.CALIB_IMAGES_PER_S)
            for p in (("none", "none"), early, deep)
        }
        lines.append(
            f"- {what}: images/s timed alone (one measurement per regime, no seed spread): "
            f"none {t[('none', 'none')]:,.0f}, early {t[early]:,.0f}, deep {t[deep]:,.0f}"
        )
    return "\n".join(lines) + "\n"


# --- claim 5: IVON overfits ---------------------------------------------------------------------

CLAIM5_COLUMNS = (TRAIN_ACC, VAL_ACC, GAP, VAL_LOSS_RISE, C.EPOCH_AT_BEST_VAL, NLL, ECE)


def claim5_table(root: Path = FINDINGS) -> str:
    df = results("optimizers", root)
    rows = [
        (f"{e}" + (f" x{m}" if e != "single" else "") + f", {o}", _model(df, e, m, o))
        for e, m in MODELS[:2]
        for o in OPTIMIZERS
    ]
    out = table(rows, df, CLAIM5_COLUMNS, "model, optimizer")
    hist = pd.read_parquet(root / "optimizers" / C.HISTORY_FILE)
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


def claim5_verdicts(root: Path = FINDINGS) -> str:
    df = results("optimizers", root)
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


# --- the document -------------------------------------------------------------------------------

# Each generated block of docs/findings.md: its name and what makes it from findings/.
BLOCKS: dict[str, Callable[[Path], str]] = {
    "claim1_table": claim1_table,
    "claim1_verdicts": claim1_verdicts,
    "claim2_grid": claim2_grid,
    "claim2_margins": claim2_margins,
    "claim2_verdicts": claim2_verdicts,
    "claim3_table": claim3_table,
    "claim3_verdicts": claim3_verdicts,
    "claim4_table": claim4_table,
    "claim4_verdicts": claim4_verdicts,
    "claim5_table": claim5_table,
    "claim5_verdicts": claim5_verdicts,
}
# The study each claim's blocks are made from.
STUDY_OF = {
    "claim1": "optimizers",
    "claim2": "alpha_gamma",
    "claim3": "ensemble_size",
    "claim4": "sharing",
    "claim5": "optimizers",
}
# The static picture of each study: the report page it is a screenshot of.
PICTURE_PAGES = {
    "optimizers": "optimizers",
    "alpha_gamma": "alpha_gamma_final_test_acc",
    "ensemble_size": "ensemble_size_lr",
    "sharing": "sharing",
}


def blocks_of(text: str) -> dict[str, str]:
    """The generated blocks of a document: name -> content."""
    return {m.group(1): m.group(2) for m in BLOCK.finditer(text)}


def available(root: Path = FINDINGS) -> dict[str, Callable[[Path], str]]:
    """The blocks whose study has committed results (a study not yet run has none)."""
    have = {s for s in STUDIES if (root / s / C.RESULTS_FILE).is_file()}
    return {k: f for k, f in BLOCKS.items() if STUDY_OF[k.split("_")[0]] in have}


def block(name: str, root: Path = FINDINGS, make: dict | None = None) -> str:
    """Block `name`: made from the data, or a line saying that its study has not run yet."""
    make = available(root) if make is None else make
    if name in make:
        return make[name](root)
    study = STUDY_OF[name.split("_")[0]]
    return f"_Not yet run: `bash findings/run.sh {study}` makes findings/{study}/._\n"


def render(text: str, root: Path = FINDINGS) -> str:
    """`text` with every generated block whose study has results made anew from `root`."""
    make = available(root)

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in BLOCKS:
            raise KeyError(
                f"docs/findings.md has a block {name!r} that analysis.findings does not make"
            )
        return f"<!-- findings:{name} -->\n{block(name, root, make)}<!-- /findings -->"

    return BLOCK.sub(fill, text)


def picture(
    study: str, out: Path, root: Path = FINDINGS, chromium: str = "/usr/bin/chromium"
) -> Path:
    """A PNG screenshot of the study's report page PICTURE_PAGES[study] (headless chromium)."""
    from analysis.report import build_report

    with tempfile.TemporaryDirectory() as tmp:
        exp = Path(tmp) / study
        exp.mkdir()
        for name in (C.RESULTS_FILE, C.HISTORY_FILE, C.STUDY_FILE):
            if (root / study / name).is_file():
                (exp / name).write_bytes((root / study / name).read_bytes())
        index = build_report(exp, Path(tmp) / "report")
        page = index.parent / f"{PICTURE_PAGES[study]}.html"
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={Path(tmp) / 'profile'}",
                "--proxy-server=127.0.0.1:9",
                "--window-size=1100,1150",
                "--virtual-time-budget=5000",
                f"--screenshot={out}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m analysis.findings", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--check", action="store_true", help="exit 1 if docs/findings.md differs from the data"
    )
    p.add_argument("--pictures", action="store_true", help="also redraw docs/findings/<study>.png")
    args = p.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    new = render(text)
    if args.check:
        stale = [k for k, v in blocks_of(new).items() if blocks_of(text).get(k) != v]
        for k in stale:
            print(
                f"docs/findings.md: block {k!r} differs from findings/ "
                "(run python -m analysis.findings)"
            )
        return 1 if stale else 0
    DOC.write_text(new, encoding="utf-8")
    print(f"wrote {DOC} ({len(available())} of {len(BLOCKS)} blocks from findings/)")
    if args.pictures:
        for study in STUDIES:
            if (FINDINGS / study / C.RESULTS_FILE).is_file():
                print(f"wrote {picture(study, PICTURES / f'{study}.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
