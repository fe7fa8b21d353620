"""Ray Tune results -> `results.parquet` (one row per trial) and `history.parquet` (per epoch).

The columns are the contract with `analysis`; docs/results_schema.md describes them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import TrialConfig
from core.trainable import EVAL_KEYS

EPOCH_METRICS = (
    ["train_loss", "train_acc"] + [f"test_{k}" for k in EVAL_KEYS] + [f"val_{k}" for k in EVAL_KEYS]
)
HISTORY_COLUMNS = EPOCH_METRICS + [
    "params",
    "batches_per_s",
    "images_per_s",
    "epoch_s",
    "current_lr",
    "diverged",
    "early_stopped",
]


def config_columns(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's config as flat columns: every TrialConfig field, `extra` as extra_<key>."""
    try:
        flat = TrialConfig.from_dict(config).to_dict()
    except Exception:  # noqa: BLE001 - an errored trial may carry a bad config; keep it raw
        flat = {k: v for k, v in config.items() if not isinstance(v, dict)}
    extra = flat.pop("extra", {}) or {}
    flat.update({f"extra_{k}": v for k, v in extra.items()})
    for k in ("alpha", "gamma"):
        if k in flat and flat[k] is None:
            flat[k] = math.nan
    return flat


def trial_frames(result: Any, study: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """One Ray Tune `Result` -> (results row, history rows)."""
    metrics = result.metrics or {}
    trial_id = metrics.get("trial_id") or Path(result.path).name
    cfg = config_columns(result.config or {})
    hist = result.metrics_dataframe
    if hist is None or hist.empty or "epoch" not in hist:
        hist = pd.DataFrame(columns=["epoch", *HISTORY_COLUMNS, "node_ip"])
    # A trial retried from a checkpoint can report an epoch twice; the last report wins.
    hist = hist.dropna(subset=["epoch"]).drop_duplicates("epoch", keep="last").sort_values("epoch")
    for col in HISTORY_COLUMNS:
        if col not in hist:
            hist[col] = math.nan
    node = str(hist["node_ip"].iloc[-1]) if "node_ip" in hist and len(hist) else None
    node_id = str(hist["node_id"].iloc[-1]) if "node_id" in hist and len(hist) else None
    history = hist[["epoch", *HISTORY_COLUMNS]].copy()
    history["epoch"] = history["epoch"].astype(int)
    history["node"] = hist["node_ip"].astype(str) if "node_ip" in hist else None
    history["node_id"] = hist["node_id"].astype(str) if "node_id" in hist else None
    for k, v in {"trial_id": trial_id, "study": study, **cfg}.items():
        history[k] = [v] * len(history)

    row: dict[str, Any] = {"trial_id": trial_id, "study": study, **cfg}
    error = result.error
    row["status"] = "ERROR" if error is not None else "TERMINATED"
    row["error"] = None if error is None else f"{type(error).__name__}: {error}"[:2000]
    row["epochs_done"] = int(history["epoch"].max()) if len(history) else 0
    row["diverged"] = bool(history["diverged"].fillna(False).astype(bool).any())
    row["early_stopped"] = bool(history["early_stopped"].fillna(False).astype(bool).any())
    row["asha_stopped"] = bool(
        error is None
        and not row["diverged"]
        and not row["early_stopped"]
        and row["epochs_done"] < cfg.get("epochs", math.inf)
    )
    row["node"] = node
    row["node_id"] = node_id
    for m in EPOCH_METRICS:
        vals = pd.to_numeric(history[m], errors="coerce")
        finite = vals.dropna()
        row[f"final_{m}"] = float(vals.iloc[-1]) if len(vals) else math.nan
        if finite.empty:
            row[f"best_{m}"] = row[f"avg_{m}"] = math.nan
        else:
            row[f"best_{m}"] = float(finite.max() if m.endswith("_acc") else finite.min())
            row[f"avg_{m}"] = float(finite.mean())
    for m in ("params", "batches_per_s", "images_per_s"):
        vals = pd.to_numeric(history[m], errors="coerce").dropna()
        row[m] = float(vals.mean()) if len(vals) else math.nan
    row["total_s"] = float(pd.to_numeric(history["epoch_s"], errors="coerce").sum())
    return row, history


def collect(result_grid: Any, study: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, histories = [], []
    for result in result_grid:
        row, hist = trial_frames(result, study)
        rows.append(row)
        histories.append(hist)
    results = pd.DataFrame(rows).sort_values("trial_id").reset_index(drop=True)
    nonempty = [h for h in histories if len(h)]
    history = (
        pd.concat(nonempty, ignore_index=True)
        if nonempty
        else pd.DataFrame(columns=["trial_id", "study", "epoch", *HISTORY_COLUMNS])
    )
    front = ["trial_id", "study", "epoch"]
    history = history[front + [c for c in history.columns if c not in front]]
    return results, history


def write_results(result_grid: Any, study: str, out_dir: Path) -> tuple[Path, Path, pd.DataFrame]:
    results, history = collect(result_grid, study)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path, history_path = out_dir / "results.parquet", out_dir / "history.parquet"
    results.to_parquet(results_path, index=False)
    history.to_parquet(history_path, index=False)
    return results_path, history_path, results
