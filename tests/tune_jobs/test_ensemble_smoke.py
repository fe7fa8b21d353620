"""Every trial of a real smoke study keeps its predictions, and `python -m analysis.ensemble`
assembles an ensemble from them (the page, its tables, and the report's link to it)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd

from analysis.ensemble import tables as T
from core import columns as C
from core.predictions import read_predictions
from tests.tune_jobs.conftest import REPO

VAL_ROWS, TEST_ROWS = 50, 250  # the smoke preset's val_fraction 0.1 of 500; test_subset 250


def analysis(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_every_trial_keeps_its_predictions_at_its_best_validation_epoch(alpha_gamma_smoke):
    results = pd.read_parquet(alpha_gamma_smoke / C.RESULTS_FILE).set_index(C.TRIAL_ID)
    files = sorted(alpha_gamma_smoke.glob(f"*/{C.PREDICTIONS_FILE}"))
    kept = {p.trial_id: p for p in map(read_predictions, files)}
    assert sorted(kept) == sorted(results.index)  # one file per trial, in its folder
    for trial_id, p in kept.items():
        assert p.selected_on == C.PRED_BY_VAL_ACC
        assert p.epoch == results.at[trial_id, C.EPOCH_AT_BEST_VAL]
        assert p.members == results.at[trial_id, "ensemble_size"]
        for split, rows in ((C.VAL, VAL_ROWS), (C.TEST, TEST_ROWS)):
            assert p.probs[split].shape == (rows, 10) and p.probs[split].dtype == np.float16
            assert p.labels[split].shape == (rows,)
            sums = p.probs[split].astype(np.float32).sum(axis=1)
            np.testing.assert_allclose(sums, 1.0, atol=1e-2)  # float16: 10 roundings of ~5e-4
    first = next(iter(kept.values()))
    for p in kept.values():  # the same examples in every trial
        for split in (C.VAL, C.TEST):
            np.testing.assert_array_equal(p.labels[split], first.labels[split])


def test_the_ensemble_command_writes_its_page_and_tables(alpha_gamma_smoke, tmp_path):
    out = tmp_path / "ensemble"
    r = analysis("analysis.ensemble", str(alpha_gamma_smoke), "--out", str(out), "--max-size", "5")
    assert r.returncode == 0, r.stderr
    page = (out / "ensemble.html").read_text()
    assert "Caruana et al. 2004" in page and "Wenzel et al. 2020" in page
    assert 'href="ensemble.html"' in (out / "index.html").read_text()
    steps = pd.read_csv(out / "tables" / T.SELECTION_CSV)
    assert list(steps[T.STEP]) == [1, 2, 3, 4, 5] and steps[T.CHOSEN].sum() == 1
    comparison = pd.read_csv(out / "tables" / T.COMPARISON_CSV)
    assert list(comparison[T.ENTRY]) == [T.GREEDY, T.BEST_SINGLE, T.BEST_KIND]
    for key in ("acc", "nll", "ece"):
        assert comparison[C.split_metric(C.TEST, key)].notna().all()
    chosen = steps[steps[T.CHOSEN]].iloc[0]
    greedy = comparison.iloc[0]
    assert greedy[C.split_metric(C.VAL, "nll")] == chosen[C.split_metric(C.VAL, "nll")]
    members = pd.read_csv(out / "tables" / T.MEMBERS_CSV)
    assert members[T.TIMES_PICKED].sum() == chosen[T.SIZE]


def test_the_report_links_the_ensemble_page(alpha_gamma_smoke, tmp_path):
    out = tmp_path / "report"
    r = analysis("analysis", str(alpha_gamma_smoke), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert 'href="ensemble.html"' in (out / "index.html").read_text()
    assert (out / "tables" / T.COMPARISON_CSV).is_file()


def test_a_study_without_predictions_is_refused_in_one_line(alpha_gamma_smoke, tmp_path):
    old = tmp_path / "old_study"
    shutil.copytree(alpha_gamma_smoke, old, ignore=shutil.ignore_patterns(C.PREDICTIONS_FILE))
    r = analysis("analysis.ensemble", str(old), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "the study predates them" in r.stderr
    # the report of such a study has no ensemble page, and says nothing about it
    r = analysis("analysis", str(old), "--out", str(tmp_path / "report"))
    assert r.returncode == 0 and not (tmp_path / "report" / "ensemble.html").exists()
