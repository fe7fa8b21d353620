"""The candidates of an ensemble: the usable trials of an experiment folder with their
predictions files (core.columns.PREDICTIONS_FILE, one in each trial's folder), read and checked
to be on the same examples."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import ReportInputError
from analysis.load import Experiment
from analysis.tidy import UNUSABLE
from core import columns as C
from core.predictions import Predictions, read_predictions


@dataclasses.dataclass(frozen=True)
class Candidates:
    """Usable trials with validation predictions, in trial-id order: `rows` their results rows,
    `probs[split]` (T, N, K) float16 and `labels[split]` (N,) for C.VAL and C.TEST."""

    rows: pd.DataFrame
    probs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    notes: list[str]

    @property
    def trial_ids(self) -> list[str]:
        return list(self.rows[C.TRIAL_ID])


def prediction_files(exp: Experiment) -> list[Path]:
    """The predictions files of an experiment: one per trial folder that kept one, in the
    experiment folder and in each `--extend` sub-folder its record names (`EXTENSIONS`)."""
    extensions = exp.meta.get(C.EXTENSIONS) or []
    folders = [exp.path, *(exp.path / e["folder"] for e in extensions if e.get("folder"))]
    return sorted(f for d in folders for f in d.glob(f"*/{C.PREDICTIONS_FILE}"))


def load_candidates(exp: Experiment) -> Candidates:
    """Every trial that can enter an ensemble: finished (not errored), not diverged, with a
    predictions file selected on validation at its `epoch_at_best_val`. Refuses (one line) a
    folder whose trials kept no predictions, or none usable."""
    files = prediction_files(exp)
    if not files:
        raise ReportInputError(
            f"{exp.path}: no trial kept predictions ({C.PREDICTIONS_FILE}): the study predates "
            "them; run it again with this code to assemble ensembles from its trials"
        )
    kept = {p.trial_id: p for p in map(read_predictions, files)}
    if not any(p.selected_on == C.PRED_BY_VAL_ACC for p in kept.values()):
        raise ReportInputError(
            f"{exp.path}: no trial kept validation predictions (val_fraction=0): an ensemble "
            "is selected on validation; run the study with --set val_fraction=0.1"
        )
    res = exp.results
    notes: list[str] = []
    usable = res[~res["outcome"].isin(UNUSABLE) & res[C.TRIAL_ID].isin(list(kept))]
    left = len(res) - len(usable)
    if left:
        notes.append(f"{left} trial(s) left out: errored, diverged or without predictions")
    usable = usable[[_selected_at_best_val(kept[t], r) for t, r in _rows(usable)]]
    if len(usable) < len(res) - left:
        notes.append(
            "trial(s) left out: their predictions are not of the epoch of their best "
            "validation accuracy (a retried epoch)"
        )
    if usable.empty:
        raise ReportInputError(
            f"{exp.path}: no usable trial (finished, not diverged) kept predictions"
        )
    usable = usable.sort_values(C.TRIAL_ID).reset_index(drop=True)
    chosen = [kept[t] for t in usable[C.TRIAL_ID]]
    probs = {s: np.stack([p.probs[s] for p in chosen]) for s in (C.VAL, C.TEST)}
    labels = {s: _same_labels(exp.path, chosen, s) for s in (C.VAL, C.TEST)}
    return Candidates(usable, probs, labels, notes)


def _rows(df: pd.DataFrame):
    return zip(df[C.TRIAL_ID], df.to_dict("records"), strict=True)


def _selected_at_best_val(pred: Predictions, row: dict) -> bool:
    """The file holds the epoch results.parquet says validation selects."""
    epoch = row.get(C.EPOCH_AT_BEST_VAL)
    return pred.selected_on == C.PRED_BY_VAL_ACC and epoch == epoch and pred.epoch == int(epoch)


def _same_labels(path: Path, chosen: list[Predictions], split: str) -> np.ndarray:
    """The split's labels, the same in every trial (else the trials saw other examples)."""
    first = chosen[0].labels[split]
    for p in chosen[1:]:
        if not np.array_equal(p.labels[split], first):
            raise ReportInputError(
                f"{path}: trials {chosen[0].trial_id} and {p.trial_id} predicted different "
                f"{split} examples (other subsets or validation splits): they cannot be ensembled"
            )
    return first
