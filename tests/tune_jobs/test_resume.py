"""--resume against the saved study, the report of a study that has not finished, and what a run
prints. Each refusal: its exit code, its one line, no Ray started, earlier files untouched."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.columns import RESULTS_FILE, STATUS, STUDY_FILE, TRIAL_ID
from tune_jobs import alpha_gamma
from tune_jobs.options import JobOptions
from tune_jobs.record import write_study_json
from tune_jobs.resume import resume_command

from .conftest import CI_SIZES, REPO, run_job

RAY_BANNER = "Started a local Ray instance"  # ray.init prints it; a refusal comes before


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path -> sha256): equal before and after = untouched."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def no_ray(r: subprocess.CompletedProcess) -> bool:
    return RAY_BANNER not in r.stdout + r.stderr and "Traceback" not in r.stderr


def report(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analysis", str(folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ----------------------------------------------------------------------------------------
# A finished study as the runner leaves it (record, Ray Tune's state, results), without Ray
# ----------------------------------------------------------------------------------------
@pytest.fixture
def finished(tmp_path) -> tuple[list[str], Path]:
    """The smoke command of a finished alpha/gamma study `x` and its folder."""
    opts = JobOptions(smoke=True, storage_path=str(tmp_path), name="x")
    exp = tmp_path / "x"
    exp.mkdir()
    write_study_json(exp, alpha_gamma.make_study(opts), opts)
    (exp / "tuner.pkl").write_bytes(b"")  # what Tuner.can_restore looks for
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    pd.DataFrame({TRIAL_ID: ["a", "b"], STATUS: ["TERMINATED"] * 2}).to_parquet(exp / RESULTS_FILE)
    return ["alpha_gamma.py", "--smoke", "--storage-path", str(tmp_path), "--name", "x"], exp


def test_resume_with_changed_options_is_refused_naming_each(finished):
    args, exp = finished
    before = snapshot(exp)
    r = run_job(*args, "--resume", "--epochs", "4", "--set", "lr=0.5", "--no-smoke")
    assert r.returncode == 2
    assert r.stderr == (
        "error: --resume: options differ from the saved study: --preset full (saved: --preset "
        "smoke), --epochs 4 (saved: not set), --set lr=0.5 (saved: not set); resume with the same "
        "options, or start a new --name\n"
    )
    assert r.stdout == "" and no_ray(r)
    assert snapshot(exp) == before


def test_resume_with_a_set_value_changed_or_dropped_is_refused(tmp_path):
    opts = JobOptions(smoke=True, storage_path=str(tmp_path), name="x", overrides=("lr=0.1",))
    exp = tmp_path / "x"
    exp.mkdir()
    write_study_json(exp, alpha_gamma.make_study(opts), opts)
    (exp / "tuner.pkl").write_bytes(b"")
    before = snapshot(exp)
    base = ["alpha_gamma.py", "--smoke", "--storage-path", str(tmp_path), "--name", "x"]
    r = run_job(*base, "--resume", "--set", "lr=0.5")
    assert r.returncode == 2 and no_ray(r)
    assert "--set lr=0.5 (saved: --set lr=0.1);" in r.stderr
    r = run_job(*base, "--resume")
    assert r.returncode == 2 and no_ray(r)
    assert "--set lr=... not given (saved: --set lr=0.1);" in r.stderr
    r = run_job(*base, "--resume", "--set", "lr=0.10", "--epochs", "1")  # 0.10 is 0.1
    assert r.stderr.count("\n") == 1 and "--epochs 1 (saved: not set);" in r.stderr
    assert "lr" not in r.stderr
    assert snapshot(exp) == before


def test_resume_of_a_finished_study_has_nothing_to_resume(finished):
    args, exp = finished
    before = snapshot(exp)
    # Options that do not change what is computed may differ.
    more = ["--cpus-per-trial", "2", "--max-concurrent", "1", "--max-failures", "0"]
    for extra in ([], more):
        r = run_job(*args, "--resume", *extra)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"nothing to resume: study x finished; results: {exp / RESULTS_FILE}\n"
        assert r.stderr == "" and no_ray(r)
    assert snapshot(exp) == before


def test_report_of_an_interrupted_or_stopped_study_says_how_to_resume(tmp_path):
    opts = JobOptions(smoke=True, storage_path=str(tmp_path), name="x")
    study = alpha_gamma.make_study(opts)
    exp = tmp_path / "x"
    exp.mkdir()
    command = resume_command(study, opts)
    cases = [
        (("interrupted", {"trials_finished": 1}), "was interrupted with 1 of 4 trial(s) finished"),
        (("running", {"driver": {"host": "elsewhere", "pid": 1}}), "stopped before it finished"),
    ]
    for (state, more), said in cases:
        write_study_json(exp, study, opts, state, **more)
        before = snapshot(exp)
        r = report(exp)
        assert r.returncode == 2
        assert r.stderr.startswith(f"error: study 'x' in {str(exp)!r} {said}"), r.stderr
        assert r.stderr.endswith(f"; resume it with: {command}\n")
        assert r.stderr.count("\n") == 1 and snapshot(exp) == before
    # Still running: its driver (here: this test's process) is alive on this machine.
    write_study_json(exp, study, opts, "running")
    r = report(exp)
    assert r.returncode == 2
    assert f"is still running (process {os.getpid()})" in r.stderr


# ----------------------------------------------------------------------------------------
# A real smoke study: what it prints, --resume once it finished, an interrupted one
# ----------------------------------------------------------------------------------------
RAY_NOISE = ("Experiment state snapshotting", "Checkpoint successfully created", "Tuner.restore(")


@pytest.mark.slow
def test_a_smoke_run_prints_the_table_and_the_project_lines_only(alpha_gamma_smoke_run):
    exp, r = alpha_gamma_smoke_run
    out = r.stdout + r.stderr
    for line in RAY_NOISE:
        assert line not in out
    assert "== Status ==" in r.stdout and "| train_" in r.stdout  # Ray's progress table
    # its cost, before any trial: FLOPs and a time estimate timed on a trial's device
    before = r.stdout[: r.stdout.index("== Status ==")]
    assert "cost: 4 trial(s) x 2 epoch(s) x 450 training images: at most " in before
    assert "training FLOPs" in before and "2 trial(s) at once: at most about" in before
    assert "--preset full" not in before  # a smoke study is no full-scale one
    assert f"results: {exp / RESULTS_FILE}" in r.stdout
    assert f"report:  python -m analysis {exp}" in r.stdout
    record = json.loads((exp / STUDY_FILE).read_text())
    assert record["state"] == "finished" and record["options"]["--preset"] == "smoke"


@pytest.mark.slow
def test_resume_of_the_real_finished_study(alpha_gamma_smoke, cifar10_dir):
    exp = alpha_gamma_smoke
    before = snapshot(exp)
    args = ["--smoke", *CI_SIZES, "--data-dir", str(cifar10_dir), "--storage-path", str(exp.parent)]
    r = run_job("alpha_gamma.py", *args, "--resume", "--epochs", "4", "--set", "lr=0.5")
    assert r.returncode == 2 and no_ray(r)
    assert r.stderr == (
        "error: --resume: options differ from the saved study: --epochs 4 (saved: --epochs 2), "
        "--set lr=0.5 (saved: not set); resume with the same options, or start a new --name\n"
    )
    r = run_job("alpha_gamma.py", *args, "--resume")
    assert r.returncode == 0 and no_ray(r)
    assert r.stdout == (
        f"nothing to resume: study alpha_gamma_smoke finished; results: {exp / RESULTS_FILE}\n"
    )
    assert snapshot(exp) == before
