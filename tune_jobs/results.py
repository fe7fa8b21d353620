"""Ray Tune results -> `results.parquet` (one row per trial) and `history.parquet` (per epoch).

The columns are the contract with `analysis`: their names are in `core.columns`, and
docs/results_schema.md describes them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from core.columns import (
    ASHA_STOPPED,
    AT_BEST_VAL_COLUMNS,
    AVG,
    BATCHES_PER_S,
    BEST,
    CONFIG_COLUMNS,
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


def _history(result: Any) -> pd.DataFrame:
    """The trial's reports, one row per epoch (the last report of an epoch reported twice)."""
    hist = result.metrics_dataframe
    if hist is None or hist.empty or EPOCH not in hist:
        hist = pd.DataFrame(columns=[EPOCH])
    # A trial retried from a checkpoint can report an epoch twice; the last report wins.
    hist = hist.dropna(subset=[EPOCH]).drop_duplicates(EPOCH, keep="last").sort_values(EPOCH)
    # Built in one go: some 200 report keys, column by column, fragment the frame.
    out = pd.DataFrame(
        {col: hist[col] if col in hist else math.nan for col in REPORT_KEYS}, index=hist.index
    )
    out[EPOCH] = out[EPOCH].astype(int)
    for col in _FLAGS:  # a report without the flag did not raise it
        out[col] = out[col].astype("boolean").fillna(False).astype(bool)
    for col, src in _WHERE_TEXT:
        out[col] = hist[src].map(_text) if src in hist else None
    for col in _WHERE_FLAGS:
        out[col] = hist[col].map(_flag) if col in hist else None
    return out.reset_index(drop=True)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _text(v: Any) -> str | None:
    return None if _missing(v) else str(v)


def _flag(v: Any) -> bool | None:
    """A reported bool as bool (progress.csv may hand it back as the text 'True')."""
    if _missing(v):
        return None
    return v == "True" if isinstance(v, str) else bool(v)


def _mean(values: pd.Series) -> float:
    finite = pd.to_numeric(values, errors="coerce").dropna()
    return float(finite.mean()) if len(finite) else math.nan


def at_best_val(epochs: pd.DataFrame) -> dict[str, float]:
    """The epoch of the best validation accuracy (the first, on ties) and the test accuracy
    and loss of that epoch: the test figures of the epoch validation selects."""
    val = pd.to_numeric(epochs[VAL_ACC], errors="coerce") if len(epochs) else pd.Series()
    if not val.notna().any():
        return dict.fromkeys(AT_BEST_VAL_COLUMNS, math.nan)
    i = val.idxmax()  # first maximum; NaN epochs skipped
    return {
        EPOCH_AT_BEST_VAL: float(epochs.at[i, EPOCH]),
        TEST_ACC_AT_BEST_VAL: float(epochs.at[i, TEST_ACC]),
        TEST_LOSS_AT_BEST_VAL: float(epochs.at[i, TEST_LOSS]),
    }


def trial_frames(result: Any, study: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """One Ray Tune `Result` -> (results row, history rows)."""
    metrics = result.metrics or {}
    trial_id = metrics.get(TRIAL_ID) or Path(result.path).name
    cfg = config_columns(result.config or {})
    epochs = _history(result)
    keys = pd.DataFrame({TRIAL_ID: trial_id, STUDY: study}, index=epochs.index)
    config = pd.DataFrame({k: [v] * len(epochs) for k, v in cfg.items()}, index=epochs.index)
    history = pd.concat([keys, epochs, config], axis=1)

    error = result.error
    last = epochs.iloc[-1] if len(epochs) else None
    row: dict[str, Any] = {TRIAL_ID: trial_id, STUDY: study, **cfg}
    row[STATUS] = STATUS_ERROR if error is not None else STATUS_TERMINATED
    # What the trial raised, not Ray's wrapper (RayTaskError(X) holds X as `cause`).
    raised = getattr(error, "cause", None)
    raised = raised if isinstance(raised, BaseException) else error
    row[ERROR] = None if error is None else f"{type(raised).__name__}: {raised}"[:ERROR_CHARS]
    row[EPOCHS_DONE] = int(epochs[EPOCH].max()) if len(epochs) else 0
    row[DIVERGED] = bool(epochs[DIVERGED].any())
    row[EARLY_STOPPED] = bool(epochs[EARLY_STOPPED].any())
    row[ASHA_STOPPED] = bool(
        error is None
        and not row[DIVERGED]
        and not row[EARLY_STOPPED]
        and row[EPOCHS_DONE] < cfg.get("epochs", math.inf)
    )
    for col in (NODE, NODE_ID, *RUNTIME_KEYS):  # where its last epoch ran
        row[col] = None if last is None else last[col]
    for m in EPOCH_METRICS:
        vals = pd.to_numeric(epochs[m], errors="coerce")
        finite = vals.dropna()
        best = finite.max() if larger_is_better(m) else finite.min()
        row[summary_column(FINAL, m)] = float(vals.iloc[-1]) if len(vals) else math.nan
        row[summary_column(BEST, m)] = float(best) if len(finite) else math.nan
        row[summary_column(AVG, m)] = float(finite.mean()) if len(finite) else math.nan
    row.update(at_best_val(epochs))
    for m in (PARAMS, BATCHES_PER_S, IMAGES_PER_S, TRAIN_FLOPS_PER_IMAGE, FLOP_PER_S):
        row[m] = _mean(epochs[m])
    peak = pd.to_numeric(epochs[PEAK_MEMORY_MB], errors="coerce").dropna()
    row[PEAK_MEMORY_MB] = float(peak.max()) if len(peak) else math.nan
    seconds = pd.to_numeric(epochs[EPOCH_S], errors="coerce").dropna()
    row[TOTAL_S] = float(seconds.sum()) if len(seconds) else math.nan  # no epochs: unknown
    for m in ROBUSTNESS_KEYS:  # measured at the end (or every k epochs): the last measurement
        finite = pd.to_numeric(epochs[m], errors="coerce").dropna()
        row[m] = float(finite.iloc[-1]) if len(finite) else math.nan
    return row, history


def collect(result_grid: Any, study: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every trial of `result_grid` (an iterable of `Result`s): (results, history) frames,
    results sorted by trial_id, history by trial_id then epoch."""
    rows, histories = [], []
    for result in result_grid:
        row, hist = trial_frames(result, study)
        rows.append(row)
        histories.append(hist)
    if rows:
        results = pd.DataFrame(rows).sort_values(TRIAL_ID, kind="stable").reset_index(drop=True)
    else:
        results = pd.DataFrame(columns=[*KEY_COLUMNS, *CONFIG_COLUMNS, *RESULTS_COLUMNS])
    nonempty = [h for h in histories if len(h)]
    if nonempty:
        # infer_objects: a column None in one trial and set in another gets the dtype that
        # reading the parquet file back gives it (e.g. patience: float64 with NaN)
        history = pd.concat(nonempty, ignore_index=True).infer_objects()
        history = history.sort_values([TRIAL_ID, EPOCH], kind="stable").reset_index(drop=True)
    else:
        history = pd.DataFrame(columns=[*KEY_COLUMNS, *HISTORY_COLUMNS, *CONFIG_COLUMNS])
    return results, history


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
