"""A trial's predictions file (core.predictions): written at the epoch selection reads and only
then, read back as written, and kept across a resume until a better epoch replaces it."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from core import columns as C
from core.checkpoint import TrialState
from core.config import TrialConfig
from core.predictions import PredictionWriter, read_predictions
from core.train import train
from tests.core.test_runtime import TINY


def splits(n_val: int | None, n_test: int, k: int = 3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)

    def one(n):
        p = rng.dirichlet(np.ones(k), size=n).astype(np.float32)
        return p, rng.integers(0, k, size=n)

    out = {C.TEST: one(n_test)}
    if n_val is not None:
        out[C.VAL] = one(n_val)
    return out


def test_the_file_reads_back_as_written_in_float16(tmp_path):
    given = splits(5, 7)
    path = PredictionWriter(tmp_path, "abc_00001").write(4, C.PRED_BY_VAL_ACC, 2, given)
    assert path == tmp_path / C.PREDICTIONS_FILE
    with np.load(path) as z:
        assert sorted(z.files) == sorted(C.PREDICTION_KEYS)
    got = read_predictions(path)
    assert (got.trial_id, got.epoch, got.selected_on, got.members) == (
        "abc_00001",
        4,
        C.PRED_BY_VAL_ACC,
        2,
    )
    for split, (probs, labels) in given.items():
        assert got.probs[split].dtype == np.float16 and got.probs[split].shape == probs.shape
        np.testing.assert_allclose(got.probs[split], probs, atol=1e-3)
        np.testing.assert_array_equal(got.labels[split], labels)
    assert not list(tmp_path.glob(".predictions-*"))  # the temporary file was renamed


def test_only_a_better_validation_accuracy_rewrites_the_file(tmp_path):
    writer = PredictionWriter(tmp_path, "t")
    best = -math.inf
    for epoch, val_acc in enumerate([0.3, 0.5, 0.5, 0.4, math.nan, 0.6, 0.2], start=1):
        best = writer.keep(epoch, val_acc, best, 1, splits(5, 7, seed=epoch))
        expected = {1: 1, 2: 2, 3: 2, 4: 2, 5: 2, 6: 6, 7: 6}[epoch]  # first of equals: 2
        assert read_predictions(writer.path).epoch == expected
    assert best == 0.6


def test_without_validation_every_epoch_writes_its_test_predictions(tmp_path):
    writer = PredictionWriter(tmp_path, "t")
    for epoch in (1, 2, 3):
        best = writer.keep(epoch, math.nan, -math.inf, 1, splits(None, 7, seed=epoch))
        got = read_predictions(writer.path)
        assert (got.epoch, got.selected_on, list(got.probs)) == (
            epoch,
            C.PRED_BY_LAST_EPOCH,
            [C.TEST],
        )
        assert best == -math.inf


def test_a_file_without_the_arrays_is_refused(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not a predictions file"):
        read_predictions(tmp_path / "x.npz")


def run(data, tmp_path, epochs, resume_state=None):
    cfg = TrialConfig.from_dict({**TINY, "epochs": epochs, "val_fraction": 0.25})
    states = []
    history = train(
        cfg,
        data=data,
        reporter=lambda m, s: states.append(copy.deepcopy(s)),
        resume_state=resume_state,
        predictions=PredictionWriter(tmp_path, "trial"),
    )
    return history, states


def test_training_keeps_the_epoch_of_the_best_validation_accuracy(data, tmp_path):
    history, states = run(data, tmp_path / "a", epochs=3)
    val = [h[C.VAL_ACC] for h in history]
    got = read_predictions(tmp_path / "a" / C.PREDICTIONS_FILE)
    assert got.epoch == 1 + val.index(max(val))  # results.parquet's epoch_at_best_val
    assert got.members == TINY["ensemble_size"]
    assert (len(got.labels[C.VAL]), len(got.labels[C.TEST])) == (20, 40)
    for split in (C.VAL, C.TEST):
        np.testing.assert_allclose(got.probs[split].astype(np.float32).sum(1), 1, atol=5e-3)
    assert [s["best_val_acc"] for s in states] == list(np.maximum.accumulate(val))

    # Resumed in a fresh working directory (Ray's, after --resume): the checkpoint's best
    # val_acc decides, so only an epoch better than every earlier one writes a file.
    history2, _ = run(data, tmp_path / "b", epochs=4, resume_state=states[-1])
    resumed_better = history2[0][C.VAL_ACC] > max(val)
    assert (tmp_path / "b" / C.PREDICTIONS_FILE).exists() == resumed_better


def test_a_checkpoint_from_before_the_predictions_loads():
    old = {f: None for f in ("model", "optimizer", "scheduler", "rng", "config", "runtime")}
    old.update(epoch=2, best_val=0.4, bad_epochs=0)
    assert TrialState.from_dict(old).best_val_acc == -math.inf
