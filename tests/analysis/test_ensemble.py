"""The ensemble's candidates and tables from an experiment folder written here (fake results,
real predictions files): which trials enter, the refusals, and the comparison's entries."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.ensemble import tables as T
from analysis.ensemble.trials import load_candidates
from analysis.errors import ReportInputError
from analysis.findings.data import FINDINGS
from analysis.findings.document import DOC
from analysis.load import load_experiment
from core import columns as C
from core.predictions import PredictionWriter
from tests.analysis import fakes

LABELS = {C.VAL: np.array([0, 1, 2, 0, 1, 2]), C.TEST: np.array([2, 1, 0, 2])}


def probs(n: int, k: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(k), size=n)


def experiment(tmp_path, specs, val=True):
    """specs: (trial_id, ensemble, outcome, epoch of its file or None for no file)."""
    trials = [fakes.trial(t, 0.6, 1.0, outcome=o, ensemble=e) for t, e, o, _ in specs]
    res, hist = fakes.frames(trials)
    folder = fakes.write_experiment(tmp_path / "exp", res, hist, study="alpha_gamma")
    for i, (trial_id, _, _, epoch) in enumerate(specs):
        if epoch is None:
            continue
        splits = {s: (probs(len(y), 3, 10 * i + j), y) for j, (s, y) in enumerate(LABELS.items())}
        if not val:
            del splits[C.VAL]
        by = C.PRED_BY_VAL_ACC if val else C.PRED_BY_LAST_EPOCH
        PredictionWriter(folder / f"train_{trial_id}", trial_id).write(epoch, by, 1, splits)
    return load_experiment(folder)


def test_only_usable_trials_with_predictions_of_their_best_epoch_enter(tmp_path):
    exp = experiment(
        tmp_path,
        [
            ("a", "single", "completed", 15),
            ("b", "deep", "completed", 15),
            ("c", "batch", "diverged", 15),  # diverged
            ("d", "single", "completed", None),  # no file
            ("e", "single", "completed", 3),  # a file of another epoch than epoch_at_best_val
        ],
    )
    cand = load_candidates(exp)
    assert cand.trial_ids == ["a", "b"]
    assert cand.probs[C.VAL].shape == (2, 6, 3) and cand.probs[C.TEST].dtype == np.float16
    assert len(cand.notes) == 2
    tables = T.ensemble_tables(cand, "nll", max_size=3)
    entries = list(tables.comparison[T.ENTRY])
    assert entries == [T.GREEDY, T.BEST_SINGLE, T.BEST_KIND]
    assert tables.comparison.iloc[2][T.TRIALS] == "b"  # the only batch or deep trial
    assert len(tables.steps) == 3 and tables.steps[T.CHOSEN].sum() == 1


def test_a_study_without_predictions_or_validation_is_refused(tmp_path):
    with pytest.raises(ReportInputError, match="predates"):
        load_candidates(experiment(tmp_path / "1", [("a", "single", "completed", None)]))
    no_val = experiment(tmp_path / "2", [("a", "single", "completed", 15)], val=False)
    with pytest.raises(ReportInputError, match="val_fraction"):
        load_candidates(no_val)


def test_findings_says_which_committed_studies_predate_predictions():
    """docs/findings.md names every committed study as one from before predictions, which
    stays true while none of them holds a predictions file."""
    section = DOC.read_text().split("## Ensembles of each study's trials")[1].split("\n## ")[0]
    studies = sorted(p.parent.name for p in FINDINGS.glob(f"*/{C.RESULTS_FILE}"))
    assert studies and all(f"`findings/{s}/`" in section for s in studies)
    assert not list(FINDINGS.rglob(C.PREDICTIONS_FILE))
    assert "python -m analysis.ensemble" in section
