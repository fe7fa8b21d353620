"""Mean / std / n of a metric per group, with the excluded trials counted by reason."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.schema import metric_label
from analysis.tidy import (
    ASHA_STOPPED,
    DIVERGED,
    ERROR,
    fmt_value,
    is_usable,
    sort_frame,
    tidy_results,
)
from core.columns import EPOCHS_DONE


def aggregate(results: pd.DataFrame, by: Sequence[str], metric: str) -> pd.DataFrame:
    """One row per group of `by` (in study order) with, for `metric`:
    mean, std (ddof=1; NaN for n < 2) and n over usable trials (see tidy.is_usable);
    n_trials; why the others were excluded (n_diverged, n_error, n_nan: finite status but NaN
    value); n_asha: usable trials stopped early by ASHA (kept, but flagged) and the fewest
    epochs such a trial ran (min_epochs_asha). Missing `by` values (None/NaN) form a group."""
    df = results if "outcome" in results else tidy_results(results)
    by = list(by)
    usable = is_usable(df, metric)
    values = pd.to_numeric(df[metric], errors="coerce").where(usable)
    keys = [df[c].astype(object).map(fmt_value) for c in by] if by else [pd.Series(0, df.index)]
    work = pd.DataFrame({f"_k{i}": k for i, k in enumerate(keys)})
    work["value"] = values
    work["usable"] = usable
    work["diverged"] = df["outcome"].eq(DIVERGED) & ~usable
    work["error"] = df["outcome"].eq(ERROR) & ~usable
    work["nan"] = ~usable & ~work["diverged"] & ~work["error"]
    work["asha"] = df["outcome"].eq(ASHA_STOPPED) & usable
    epochs = df[EPOCHS_DONE] if EPOCHS_DONE in df else pd.Series(np.nan, index=df.index)
    work["asha_epochs"] = pd.to_numeric(epochs, errors="coerce").where(work["asha"])
    for c in by:
        work[c] = df[c]
    kcols = [c for c in work.columns if c.startswith("_k")]
    grouped = work.groupby(kcols, sort=False, dropna=False)
    out = grouped.agg(
        mean=("value", "mean"),
        std=("value", "std"),
        n=("usable", "sum"),
        n_trials=("value", "size"),
        n_diverged=("diverged", "sum"),
        n_error=("error", "sum"),
        n_nan=("nan", "sum"),
        n_asha=("asha", "sum"),
        min_epochs_asha=("asha_epochs", "min"),
    )
    firsts = grouped[by].first() if by else None
    out = out.reset_index(drop=True)
    if firsts is not None:
        out = pd.concat([firsts.reset_index(drop=True), out], axis=1)
        out = sort_frame(out, by).reset_index(drop=True)
    for c in ("n", "n_trials", "n_diverged", "n_error", "n_nan", "n_asha"):
        out[c] = out[c].astype(int)
    out.insert(len(by), "metric", metric)
    return out


_REASONS = (("n_diverged", "diverged"), ("n_error", "errored"), ("n_nan", "NaN value"))


def _counts(stats: pd.DataFrame) -> tuple[int, ...]:
    return tuple(int(stats[c].sum()) for c, _ in _REASONS)


def _note(counts: tuple[int, ...], metrics: Sequence[str]) -> str | None:
    total = sum(counts)
    if not total:
        return None
    parts = [f"{k} {text}" for k, (_, text) in zip(counts, _REASONS, strict=True) if k]
    names = ", ".join(metric_label(m) for m in dict.fromkeys(metrics))
    plural = "s" if total != 1 else ""
    return f"{total} trial{plural} excluded from the {names} means: " + ", ".join(parts)


def excluded_note(stats: pd.DataFrame) -> str | None:
    """'3 trials excluded from the final test accuracy means: 2 diverged, 1 errored' (None when
    none were); `stats` is an `aggregate` frame."""
    return _note(_counts(stats), list(stats["metric"]))


def excluded_notes(stats: Sequence[pd.DataFrame]) -> list[str]:
    """excluded_note of several `aggregate` frames, one note per distinct set of counts."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for s in stats:
        groups.setdefault(_counts(s), []).extend(s["metric"])
    return [n for counts, metrics in groups.items() if (n := _note(counts, metrics))]


def unusable_reason(row: pd.Series) -> str:
    """Why a group has no usable value, e.g. '3 diverged' or '1 errored, 2 NaN'."""
    parts = [
        f"{int(row[c])} {t}"
        for c, t in (("n_diverged", "diverged"), ("n_error", "errored"), ("n_nan", "NaN"))
        if row[c]
    ]
    return ", ".join(parts) or "no trial"


def asha_note(stats: pd.DataFrame, mark: str = "") -> str | None:
    """'2 trials stopped early by ASHA (their last reported value is kept[, mark]; fewest
    epochs: 3)' or None."""
    k = int(stats["n_asha"].sum())
    if not k:
        return None
    fewest = stats["min_epochs_asha"].min()
    extra = f"; fewest epochs: {int(fewest)}" if pd.notna(fewest) else ""
    mark = f", {mark}" if mark else ""
    return (
        f"{k} trial{'s' if k != 1 else ''} stopped early by ASHA "
        f"(their last reported value is kept{mark}{extra})"
    )


# Seeds and colour contrast. A heatmap's colour scale stretches over whatever range its cells
# span; when that range is smaller than the seed-to-seed spread, the contrast is noise. The
# range is left as it is (the cells print their values) and the subtitle says so instead.
ONE_SEED = "one seed per configuration: differences between configurations are untested"


def spread_caveat(stats: pd.DataFrame) -> str | None:
    """For an `aggregate` frame drawn as colours: ONE_SEED when no group has two usable
    trials; 'colour range 0.004 < median seed sd 0.010: ...' when the means span less than
    the median sd of the groups; else None."""
    ok = stats[stats["n"] > 0]
    if ok.empty:
        return None
    if int(ok["n"].max()) < 2:
        return ONE_SEED
    span = float(ok["mean"].max() - ok["mean"].min())
    sd = float(ok["std"].median())
    if span < sd:
        return (
            f"colour range {span:.3g} < median seed sd {sd:.3g}: "
            "the colour contrast is within seed noise"
        )
    return None
