"""Ray Tune results -> `results.parquet` (one row per trial) and `history.parquet` (per epoch).

The columns are the contract with `analysis`: their names are in `core.columns`, and
docs/results_schema.md describes them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from core.columns import (
    ASHA_STOPPED,
    AVG,
    BATCHES_PER_S,
    BEST,
    CONFIG_COLUMNS,
    CORRUPT_CELLS,
    CORRUPT_CELLS_JSON,
    DEVICE_NAME,
    DIVERGED,
    EARLY_STOPPED,
    EPOCH,
    EPOCH_AT_BEST_VAL,
    EPOCH_METRICS,
    EPOCH_S,
    EPOCHS_DONE,
    ERROR,
    ERROR_CHARS,
    FINAL,
    FLOP_PER_S,
    HISTORY_COLUMNS,
    HISTORY_FILE,
    IMAGES_PER_S,
    KEY_COLUMNS,
    NAN_WHEN_NONE,
    NODE,
    NODE_ID,
    PARAMS,
    PEAK_MEMORY_MB,
    RAY_NODE_IP,
    REPORT_KEYS,
    RESOLVED_CHANNELS_LAST,
    RESOLVED_COMPILE,
    RESOLVED_DEVICE,
    RESOLVED_PRECISION,
    RESULTS_COLUMNS,
    RESULTS_FILE,
    ROBUSTNESS_KEYS,
    RUNTIME_KEYS,
    STATUS,
    STATUS_ERROR,
    STATUS_TERMINATED,
    STUDY,
    TEST_ACC,
    TEST_ACC_AT_BEST_VAL,
    TEST_LOSS,
    TEST_LOSS_AT_BEST_VAL,
    TOTAL_S,
    TRAIN_FLOPS_PER_IMAGE,
    TRIAL_ID,
    VAL_ACC,
    extra_column,
    larger_is_better,
    summary_column,
)
from core.config import TrialConfig

# EPOCH_METRICS and HISTORY_COLUMNS are re-exported for the smoke tests.
__all__ = [
    "EPOCH_METRICS",
    "HISTORY_COLUMNS",
    "collect",
    "config_columns",
    "keep_saved",
    "trial_frames",
    "write_results",
]

_FLAGS = (DIVERGED, EARLY_STOPPED)
# Where each epoch ran, column <- report key: text, and the resolved runtime's switches (bool).
# None where a report lacks them (Ray adds node_ip; trials of older code reported no runtime).
_WHERE_TEXT = (
    (NODE, RAY_NODE_IP),
    (NODE_ID, NODE_ID),
    (DEVICE_NAME, DEVICE_NAME),
    (RESOLVED_DEVICE, RESOLVED_DEVICE),
    (RESOLVED_PRECISION, RESOLVED_PRECISION),
)
_WHERE_FLAGS = (RESOLVED_CHANNELS_LAST, RESOLVED_COMPILE)


def config_columns(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's config as flat columns: every TrialConfig field, `extra` as extra_<key>."""
    try:
        flat = TrialConfig.from_dict(config).to_dict()
    except Exception:  # noqa: BLE001 - an errored trial may carry a bad config; keep it raw
        flat = {k: v for k, v in config.items() if not isinstance(v, dict) or k == "extra"}
    extra = flat.pop("extra", {})
    flat.update({extra_column(k): v for k, v in (extra if isinstance(extra, dict) else {}).items()})
    for k in NAN_WHEN_NONE:
        if k in flat and flat[k] is None:
            flat[k] = math.nan
    return flat


_TRIAL = "_trial"  # a trial's position in the result grid, while frames are built


def _unpack_cells(hist: pd.DataFrame) -> pd.DataFrame:
    """The CORRUPT_CELLS of reports that carry them packed (core.report.tune_metrics) as
    columns, NaN where a report has none; a trial that reported them as columns (before they
    were packed) keeps its own."""
    if CORRUPT_CELLS_JSON not in hist:
        return hist
    packed = hist.pop(CORRUPT_CELLS_JSON)
    packed = packed[packed.notna()]
    cells = pd.DataFrame([json.loads(text) for text in packed], index=packed.index)
    cells = cells.reindex(index=hist.index, columns=list(CORRUPT_CELLS))
    if set(CORRUPT_CELLS) & set(hist.columns):
        cells = cells.combine_first(hist.reindex(columns=list(CORRUPT_CELLS)))
    return pd.concat([hist.drop(columns=list(CORRUPT_CELLS), errors="ignore"), cells], axis=1)


def _epochs(reports: list[pd.DataFrame]) -> pd.DataFrame:
    """Every trial's reports (each frame with its _TRIAL), one row per trial and epoch (the
    last report of an epoch reported twice), sorted by trial then epoch; REPORT_KEYS and where
    each epoch ran as columns. One frame for all trials: the per-column work is done once,
    not once per trial (a study of 10,000 trials is written in seconds: benchmarks/scale.py)."""
    if not reports:
        return pd.DataFrame(columns=[_TRIAL, *REPORT_KEYS, *(c for c, _ in _WHERE_TEXT),
                                     *_WHERE_FLAGS])  # fmt: skip
    hist = _unpack_cells(pd.concat(reports, ignore_index=True))
    # A trial retried from a checkpoint can report an epoch twice; the last report wins.
    hist = hist.dropna(subset=[EPOCH]).drop_duplicates([_TRIAL, EPOCH], keep="last")
    hist = hist.sort_values([_TRIAL, EPOCH], kind="stable").reset_index(drop=True)
    # Built in one go: some 200 report keys, column by column, fragment the frame.
    out = pd.DataFrame(
        {col: hist[col] if col in hist else math.nan for col in (_TRIAL, *REPORT_KEYS)},
        index=hist.index,
    )
    out[EPOCH] = out[EPOCH].astype(int)
    for col in _FLAGS:  # a report without the flag did not raise it
        out[col] = out[col].astype("boolean").fillna(False).astype(bool)
    for col, src in _WHERE_TEXT:
        out[col] = hist[src].map(_text) if src in hist else None
    for col in _WHERE_FLAGS:
        out[col] = hist[col].map(_flag) if col in hist else None
    return out


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _text(v: Any) -> str | None:
    return None if _missing(v) else str(v)


def _flag(v: Any) -> bool | None:
    """A reported bool as bool (progress.csv may hand it back as the text 'True')."""
    if _missing(v):
        return None
    return v == "True" if isinstance(v, str) else bool(v)


def _summaries(epochs: pd.DataFrame, trials: int) -> pd.DataFrame:
    """The per-trial summary columns of RESULTS_COLUMNS (from EPOCHS_DONE on, ASHA_STOPPED
    aside), one row per trial position 0..trials-1; a trial without epochs gets 0 epochs, no
    flag raised, None where it ran and NaN for every metric."""
    rows = pd.RangeIndex(trials)
    num = epochs.drop(columns=[c for c, _ in _WHERE_TEXT] + list(_WHERE_FLAGS))
    num = num.apply(pd.to_numeric, errors="coerce")
    by = num.groupby(epochs[_TRIAL])
    at_last = epochs.drop_duplicates(_TRIAL, keep="last").index  # each trial's last epoch
    last = epochs.loc[at_last].set_index(_TRIAL).reindex(rows)
    last_num = num.loc[at_last].set_index(_TRIAL).reindex(rows)
    out: dict[str, Any] = {
        EPOCHS_DONE: by[EPOCH].max().reindex(rows).fillna(0).astype(int),
        DIVERGED: by[DIVERGED].any().reindex(rows, fill_value=False).astype(bool),
        EARLY_STOPPED: by[EARLY_STOPPED].any().reindex(rows, fill_value=False).astype(bool),
    }
    for col in (NODE, NODE_ID, *RUNTIME_KEYS):  # where its last epoch ran
        values = [None if _missing(v) else v for v in last[col].tolist()]
        out[col] = pd.Series(values, index=rows)  # the dtype a column of these values infers
    best = {True: by.max(), False: by.min()}
    mean = by.mean()
    for m in EPOCH_METRICS:
        out[summary_column(FINAL, m)] = last_num[m]
        out[summary_column(BEST, m)] = best[larger_is_better(m)][m].reindex(rows)
        out[summary_column(AVG, m)] = mean[m].reindex(rows)
    # The epoch of the best validation accuracy (the first, on ties) and its test figures:
    # the test figures of the epoch validation selects.
    val = num[num[VAL_ACC].notna()]
    at = val.groupby(epochs.loc[val.index, _TRIAL])[VAL_ACC].idxmax()
    picked = num.loc[at.to_numpy()].set_index(epochs.loc[at.to_numpy(), _TRIAL]).reindex(rows)
    out[EPOCH_AT_BEST_VAL] = picked[EPOCH].astype(float)
    out[TEST_ACC_AT_BEST_VAL] = picked[TEST_ACC]
    out[TEST_LOSS_AT_BEST_VAL] = picked[TEST_LOSS]
    for m in (PARAMS, BATCHES_PER_S, IMAGES_PER_S, TRAIN_FLOPS_PER_IMAGE, FLOP_PER_S):
        out[m] = mean[m].reindex(rows)
    out[PEAK_MEMORY_MB] = by[PEAK_MEMORY_MB].max().reindex(rows)
    out[TOTAL_S] = by[EPOCH_S].sum(min_count=1).reindex(rows)  # no epochs: unknown
    last_measured = by[list(ROBUSTNESS_KEYS)].last().reindex(rows)  # the last measurement
    for m in ROBUSTNESS_KEYS:  # measured at the end (or every k epochs)
        out[m] = last_measured[m]
    return pd.DataFrame(out, index=rows)


def collect(result_grid: Any, study: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every trial of `result_grid` (an iterable of `Result`s): (results, history) frames,
    results sorted by trial_id, history by trial_id then epoch."""
    rows, reports = [], []
    for result in result_grid:
        metrics = result.metrics or {}
        row: dict[str, Any] = {
            TRIAL_ID: metrics.get(TRIAL_ID) or Path(result.path).name,
            STUDY: study,
            **config_columns(result.config or {}),
        }
        error = result.error
        row[STATUS] = STATUS_ERROR if error is not None else STATUS_TERMINATED
        # What the trial raised, not Ray's wrapper (RayTaskError(X) holds X as `cause`).
        raised = getattr(error, "cause", None)
        raised = raised if isinstance(raised, BaseException) else error
        row[ERROR] = None if error is None else f"{type(raised).__name__}: {raised}"[:ERROR_CHARS]
        hist = result.metrics_dataframe
        if hist is not None and not hist.empty and EPOCH in hist:
            reports.append(hist.assign(**{_TRIAL: len(rows)}))
        rows.append(row)
    if not rows:
        results = pd.DataFrame(columns=[*KEY_COLUMNS, *CONFIG_COLUMNS, *RESULTS_COLUMNS])
        history = pd.DataFrame(columns=[*KEY_COLUMNS, *HISTORY_COLUMNS, *CONFIG_COLUMNS])
        return results, history
    trials = pd.DataFrame(rows)
    epochs = _epochs(reports)
    summaries = _summaries(epochs, len(trials))
    planned = pd.to_numeric(trials.get("epochs", pd.Series(math.inf, index=trials.index)))
    summaries[ASHA_STOPPED] = (
        (trials[STATUS] == STATUS_TERMINATED)
        & ~summaries[DIVERGED]
        & ~summaries[EARLY_STOPPED]
        & (summaries[EPOCHS_DONE] < planned.fillna(math.inf))
    )
    config = [c for c in trials.columns if c not in (*KEY_COLUMNS, STATUS, ERROR)]
    results = pd.concat([trials, summaries], axis=1)
    results = results[[*KEY_COLUMNS, *config, *RESULTS_COLUMNS]]
    results = results.sort_values(TRIAL_ID, kind="stable").reset_index(drop=True)
    if len(epochs):
        at = epochs[_TRIAL].to_numpy()
        keys = trials[list(KEY_COLUMNS)].iloc[at].reset_index(drop=True)
        cfg = trials[config].iloc[at].reset_index(drop=True)
        history = pd.concat([keys, epochs.drop(columns=_TRIAL), cfg], axis=1)
        # infer_objects: a column None in one trial and set in another gets the dtype that
        # reading the parquet file back gives it (e.g. patience: float64 with NaN)
        history = history.infer_objects()
        history = history.sort_values([TRIAL_ID, EPOCH], kind="stable").reset_index(drop=True)
    else:
        history = pd.DataFrame(columns=[*KEY_COLUMNS, *HISTORY_COLUMNS, *CONFIG_COLUMNS])
    return results, history


def trial_frames(result: Any, study: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """One Ray Tune `Result` -> (results row, history rows)."""
    results, history = collect([result], study)
    return results.iloc[0].to_dict(), history


def keep_saved(new: pd.DataFrame, saved: pd.DataFrame | None) -> pd.DataFrame:
    """The saved rows of trials `new` does not hold (an extension's earlier trials), as they
    were saved, then `new`'s rows (sorted by `collect`); `new` alone without saved rows."""
    if saved is None or not len(saved):
        return new
    kept = saved[~saved[TRIAL_ID].isin(new[TRIAL_ID])]
    if not len(new):
        return kept.reset_index(drop=True)
    return pd.concat([kept, new], ignore_index=True)


def write_results(
    result_grid: Any,
    study: str,
    out_dir: Path,
    saved: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> tuple[Path, Path, pd.DataFrame]:
    """Write results.parquet and history.parquet of `result_grid` into `out_dir`, after the
    `saved` (results, history) rows of the trials it does not hold (`keep_saved`); returns
    their paths and the results frame."""
    results, history = collect(result_grid, study)
    if saved is not None:
        results, history = keep_saved(results, saved[0]), keep_saved(history, saved[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path, history_path = out_dir / RESULTS_FILE, out_dir / HISTORY_FILE
    results.to_parquet(results_path, index=False)
    history.to_parquet(history_path, index=False)
    return results_path, history_path, results
