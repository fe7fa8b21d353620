"""A trial's predictions: the ensemble's class probabilities on the validation and test splits
at the epoch selection reads, kept in one file of the trial's folder (core.columns names the
file and its arrays), so that ensembles can be assembled afterwards from a sweep's own trials
(analysis.ensemble).

`PredictionWriter.keep` writes the file when it changes (core.train offers it every epoch): at a
new best validation accuracy, the epoch `epoch_at_best_val` of results.parquet names;
`read_predictions` reads it back. The
probabilities are the mean over the trial's members in float16, the labels int16: at the full
preset (5,000 validation and 10,000 test images, 10 classes) 300 kB of probabilities and 30 kB
of labels before compression. Torch-free: the report reads the files without the training stack.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np

from core import columns as C

PROBS_DTYPE = np.float16
LABELS_DTYPE = np.int16


@dataclasses.dataclass(frozen=True)
class Predictions:
    """One trial's file: probabilities (N, K) and labels (N,) per split it has (C.VAL is missing
    without a validation split), the epoch they are of and how that epoch was chosen."""

    trial_id: str
    epoch: int
    selected_on: str  # C.PRED_BY_VAL_ACC or C.PRED_BY_LAST_EPOCH
    members: int
    probs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class PredictionWriter:
    """Writes a trial's predictions file into `directory` (under Ray Tune the trial's working
    directory, which Ray syncs into the trial's folder of the experiment)."""

    directory: str | os.PathLike
    trial_id: str

    @property
    def path(self) -> Path:
        return Path(self.directory) / C.PREDICTIONS_FILE

    def keep(
        self,
        epoch: int,
        val_acc: float,
        best_val_acc: float,
        members: int,
        splits: dict[str, tuple[np.ndarray, np.ndarray]],
    ) -> float:
        """Write the file when `epoch` is the one selection reads: a validation accuracy above
        every earlier one (`best_val_acc`; the first of equals, as results.parquet's
        `epoch_at_best_val`), and only then. Without a validation split (no C.VAL in `splits`)
        no epoch can be selected: every epoch writes its test predictions, marked
        C.PRED_BY_LAST_EPOCH, so the last one stays. Returns the best validation accuracy so
        far (what the checkpoint keeps, so that a resumed trial keeps the file until beaten)."""
        selected_on = C.PRED_BY_LAST_EPOCH
        if C.VAL in splits:
            if not val_acc > best_val_acc:  # NaN never selects
                return best_val_acc
            best_val_acc, selected_on = val_acc, C.PRED_BY_VAL_ACC
        self.write(epoch, selected_on, members, splits)
        return best_val_acc

    def write(
        self,
        epoch: int,
        selected_on: str,
        members: int,
        splits: dict[str, tuple[np.ndarray, np.ndarray]],
    ) -> Path:
        """Replace the file with `splits` (split -> mean probabilities (N, K), labels (N,)) of
        `epoch`. Written to a temporary file first and renamed: a sync or a crash never sees
        half a file, and the previous file stays valid until the new one is complete."""
        arrays: dict[str, np.ndarray] = {
            C.TRIAL_ID: np.asarray(self.trial_id),
            C.EPOCH: np.asarray(epoch, dtype=np.int64),
            C.PRED_SELECTED_ON: np.asarray(selected_on),
            C.PRED_MEMBERS: np.asarray(members, dtype=np.int64),
        }
        for split, (probs, labels) in splits.items():
            arrays[C.probs_key(split)] = np.asarray(probs).astype(PROBS_DTYPE)
            arrays[C.labels_key(split)] = np.asarray(labels).astype(LABELS_DTYPE)
        Path(self.directory).mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".predictions-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, **arrays)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.path


def read_predictions(path: str | os.PathLike) -> Predictions:
    """A predictions file as written by `PredictionWriter`; ValueError naming what is missing
    or malformed."""
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in C.PREDICTION_KEYS if k not in z and k not in _OPTIONAL]
        if missing:
            raise ValueError(f"{path}: not a predictions file (missing {', '.join(missing)})")
        probs, labels = {}, {}
        for split in C.PREDICTION_SPLITS:
            if C.probs_key(split) in z:
                probs[split] = z[C.probs_key(split)]
                labels[split] = z[C.labels_key(split)].astype(np.int64)
                _check_shapes(path, split, probs[split], labels[split])
        return Predictions(
            trial_id=str(z[C.TRIAL_ID]),
            epoch=int(z[C.EPOCH]),
            selected_on=str(z[C.PRED_SELECTED_ON]),
            members=int(z[C.PRED_MEMBERS]),
            probs=probs,
            labels=labels,
        )


# Without a validation split a trial keeps its test predictions only.
_OPTIONAL = (C.probs_key(C.VAL), C.labels_key(C.VAL))


def _check_shapes(path, split: str, probs: np.ndarray, labels: np.ndarray) -> None:
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(
            f"{path}: {split} probabilities {probs.shape} and labels {labels.shape} "
            "are not (N, K) and (N,)"
        )
