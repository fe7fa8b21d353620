"""Unusable input: one clear ReportInputError naming what is missing; CLI exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis import ReportInputError, build_report
from tests.analysis import fakes

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small():
    return fakes.sharing_frames(seeds=(0,))


def test_missing_folder(tmp_path):
    with pytest.raises(ReportInputError, match=r"experiment folder '.*nope' does not exist"):
        build_report(tmp_path / "nope")


def test_empty_folder(tmp_path):
    with pytest.raises(ReportInputError, match=r"no results in .*: results\.parquet is missing"):
        build_report(tmp_path)
    assert list(tmp_path.iterdir()) == []  # no report folder left behind


def test_results_without_rows(tmp_path, small):
    exp = fakes.write_experiment(tmp_path / "e", small[0].head(0), small[1].head(0))
    with pytest.raises(ReportInputError, match=r"results\.parquet has no rows"):
        build_report(exp)


def test_missing_required_columns_named_in_one_message(tmp_path, small):
    results, history = small
    exp = fakes.write_experiment(
        tmp_path / "e",
        results.drop(columns=["seed", "final_test_acc"]),
        history.drop(columns=["test_loss"]),
    )
    with pytest.raises(ReportInputError) as info:
        build_report(exp)
    msg = str(info.value)
    assert "results.parquet is missing required column(s) ['seed', 'final_test_acc']" in msg
    assert "history.parquet is missing required column(s) ['test_loss']" in msg
    assert not (exp / "report").exists()


def test_unreadable_parquet_and_non_numeric_metric(tmp_path, small):
    exp = tmp_path / "e"
    exp.mkdir()
    (exp / "results.parquet").write_text("not parquet")
    with pytest.raises(ReportInputError, match=r"results\.parquet could not be read as parquet"):
        build_report(exp)
    bad = small[0].assign(final_test_acc="high")
    fakes.write_experiment(exp, bad)
    with pytest.raises(ReportInputError, match=r"column\(s\) \['final_test_acc'\] must be numeric"):
        build_report(exp)


def test_not_a_folder(tmp_path):
    f = tmp_path / "results.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(f)
    with pytest.raises(ReportInputError, match="is not a folder"):
        build_report(f)


def test_only_errored_trials_still_report(tmp_path):
    rows = [fakes.trial(f"t{s}", 0.5, 1.0, outcome="error", seed=s) for s in (0, 1)]
    results, history = fakes.frames(rows)
    exp = fakes.write_experiment(tmp_path / "e", results, history)
    index = build_report(exp)  # no crash; the index says what happened
    assert 'errored</td><td class="num">2' in index.read_text()


def test_cli_error_exit_code_2_message_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == f"error: experiment folder '{tmp_path / 'missing'}' does not exist"
    )
    assert "Traceback" not in proc.stderr + proc.stdout
