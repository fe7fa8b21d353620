"""`--extend` of a finished study (issue 24, item 4): what it plans (no Ray), what it refuses
(one line, exit 2, before Ray starts, nothing written) and two real extensions: a smoke grid
from 1 to 2 seeds (interrupted and resumed), a search from 3 to 5 samples continuing its
Optuna study."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from analysis.ensemble.trials import load_candidates
from analysis.load import load_experiment
from core.columns import (
    EXTENSIONS,
    HISTORY_FILE,
    RESULTS_FILE,
    STATE_INTERRUPTED,
    STUDY_FILE,
    TRIAL_ID,
)
from core.config import TrialConfig
from tune_jobs import alpha_gamma, optimizers, search
from tune_jobs.errors import JobError
from tune_jobs.extend import EXTENSION_CELL, plan_extension, tune_run
from tune_jobs.options import JobOptions
from tune_jobs.record import study_record, write_study_json
from tune_jobs.resume import json_round_trip, resume_command
from tune_jobs.study import grid_configs

from .conftest import CI_SIZES, REPO, run_job
from .test_resume import finished, no_ray, report, snapshot  # noqa: F401 (finished: a fixture)


def saved(module, opts: JobOptions, **script) -> dict:
    """study.json of `module`'s study built from `opts`, as read back."""
    study = module.make_study(opts, **script)
    study.script_options = {"--" + k.replace("_", "-"): v for k, v in script.items()}
    return json_round_trip(study_record(study, opts))


def plan(module, opts: JobOptions, record: dict, **script):
    study = module.make_study(opts, **script)
    study.script_options = {"--" + k.replace("_", "-"): v for k, v in script.items()}
    return plan_extension(record, study, opts)


# ----------------------------------------------------------------------------------------
# The plan, without Ray
# ----------------------------------------------------------------------------------------
def test_more_seeds_plan_exactly_the_new_cells(tmp_path):
    one = JobOptions(smoke=True, storage_path=str(tmp_path), name="x")
    two = JobOptions(smoke=True, storage_path=str(tmp_path), name="x", seeds=2, extend=True)
    ext = plan(alpha_gamma, two, saved(alpha_gamma, one))
    assert (ext.folder, ext.grew, ext.trials_before, ext.trials_after) == (
        "extend-1",
        {"--seeds": [1, 2]},
        4,
        8,
    )
    cells = [TrialConfig.from_dict(c) for c in grid_configs(ext.space)]
    assert sorted((c.alpha, c.gamma, c.seed) for c in cells) == [
        (a, g, 1) for a in (-0.5, 0.5) for g in (-0.5, 0.5)
    ]
    # Where it runs: a Tune experiment of its own inside the study's folder.
    at = tune_run({}, alpha_gamma.make_study(two), two, ext)
    assert (at.path, at.trials) == (f"{tmp_path}/x/extend-1", 4)


def test_a_bundled_grid_extends_with_the_bundles_fields(tmp_path):
    one = JobOptions(smoke=True, storage_path=str(tmp_path), name="x")
    two = JobOptions(smoke=True, storage_path=str(tmp_path), name="x", seeds=2)
    three = JobOptions(smoke=True, storage_path=str(tmp_path), name="x", seeds=3)
    ext = plan(optimizers, three, saved(optimizers, two))
    cells = [TrialConfig.from_dict(c) for c in grid_configs(ext.space)]
    assert len(cells) == len(grid_configs(optimizers.make_study(one).space)) == 7
    assert {c.seed for c in cells} == {2}
    assert {c.optimizer for c in cells} == {"adam", "sgd", "ivon"}
    assert EXTENSION_CELL in ext.space


def test_a_search_plans_the_added_samples(tmp_path):
    opts = JobOptions(preset="cpu", storage_path=str(tmp_path), name="s")
    ext = plan(search, opts, saved(search, opts, num_samples=3), num_samples=5)
    assert (ext.num_samples, ext.grew, ext.trials_after) == (2, {"--num-samples": [3, 5]}, 5)
    assert ext.space == search.make_study(opts).space


@pytest.mark.parametrize(
    "given, message",
    [
        (
            dict(seeds=1),
            "--seeds=1: --extend keeps every finished trial and adds new ones, so it needs more "
            "than the saved 2: it may not shrink the study; allowed: --seeds above 2, the other "
            "options as saved",
        ),
        (
            dict(seeds=2),
            "--seeds=2: --extend keeps every finished trial and adds new ones, so it needs more "
            "than the saved 2: it would run the saved grid's cells only (its grid has not "
            "grown); allowed: --seeds above 2, the other options as saved",
        ),
        (
            dict(seeds=3, epochs=3),
            "--extend: options differ from the saved study: --epochs 3 (saved: not set); only "
            "--seeds and --num-samples may grow: extend with the others as saved, or start a "
            "new --name",
        ),
    ],
)
def test_an_extension_that_shrinks_adds_nothing_or_changes_an_option_is_refused(
    tmp_path, given, message
):
    record = saved(alpha_gamma, JobOptions(smoke=True, storage_path=str(tmp_path), seeds=2))
    opts = JobOptions(smoke=True, storage_path=str(tmp_path), extend=True, **given)
    with pytest.raises(JobError) as e:
        plan(alpha_gamma, opts, record)
    assert str(e.value) == message


def test_a_grid_the_study_grew_extends_by_its_new_cells(tmp_path):
    opts = JobOptions(smoke=True, storage_path=str(tmp_path), name="x", extend=True)
    record = saved(alpha_gamma, opts)
    record["space"]["alpha"]["grid_search"].remove(0.5)  # saved before the script added 0.5
    record["trials"] = 2
    ext = plan(alpha_gamma, opts, record)
    cells = [TrialConfig.from_dict(c) for c in grid_configs(ext.space)]
    assert sorted((c.alpha, c.gamma, c.seed) for c in cells) == [(0.5, -0.5, 0), (0.5, 0.5, 0)]
    assert (ext.grew, ext.trials_before, ext.trials_after) == ({}, 2, 4)


def test_a_grid_that_lost_a_saved_cell_is_refused(tmp_path):
    opts = JobOptions(smoke=True, storage_path=str(tmp_path), seeds=2)
    record = saved(alpha_gamma, opts)
    record["space"]["alpha"]["grid_search"].append(0.9)  # a cell the study no longer has
    with pytest.raises(JobError, match=r"lacks 4 of the saved study's 12 cell\(s\)"):
        plan(alpha_gamma, JobOptions(smoke=True, storage_path=str(tmp_path), seeds=3), record)


def test_extend_with_resume_is_refused():
    with pytest.raises(JobError, match=r"^--extend=True: .*allowed: --extend .* alone$"):
        JobOptions(extend=True, resume=True).check()


# ----------------------------------------------------------------------------------------
# Refused from the command line: one line, exit 2, before Ray starts, nothing written
# ----------------------------------------------------------------------------------------
def test_extend_refusals_are_one_line_before_ray(finished, tmp_path):  # noqa: F811
    args, exp = finished
    before = snapshot(exp)
    cases = {
        ("--extend", "--seeds", "2", "--epochs", "3"): "error: --extend: options differ from "
        "the saved study: --epochs 3 (saved: not set); only --seeds and --num-samples may grow",
        ("--extend", "--seeds", "1"): "error: --seeds=1: --extend keeps every finished trial "
        "and adds new ones, so it needs more than the saved 1: it would run the saved grid's "
        "cells only",
        ("--extend", "--seeds", "2", "--name", "nowhere"): "error: --name='nowhere': --extend: "
        f"no experiment to extend at {tmp_path}/nowhere; allowed: the name of an experiment",
    }
    for extra, start in cases.items():
        r = run_job(*args, *extra)
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith(start) and r.stderr.count("\n") == 1, r.stderr
        assert r.stdout == "" and no_ray(r)
    assert snapshot(exp) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # nothing made for "nowhere"


def test_extend_of_an_interrupted_study_says_resume_it_first(tmp_path):
    opts = JobOptions(smoke=True, storage_path=str(tmp_path), name="x")
    exp = tmp_path / "x"
    exp.mkdir()
    study = alpha_gamma.make_study(opts)
    write_study_json(exp, study, opts, STATE_INTERRUPTED)
    (exp / "tuner.pkl").write_bytes(b"")  # what Tuner.can_restore looks for
    before = snapshot(exp)
    r = run_job("alpha_gamma.py", "--smoke", "--storage-path", str(tmp_path), "--name", "x",
                "--seeds", "2", "--extend")  # fmt: skip
    assert r.returncode == 2 and r.stdout == "" and no_ray(r)
    assert r.stderr == (
        "error: --extend=True: study x is interrupted; allowed: --extend of a finished study; "
        f"resume it first: {resume_command(study, opts)}\n"
    )
    assert snapshot(exp) == before


# ----------------------------------------------------------------------------------------
# Real extensions
# ----------------------------------------------------------------------------------------
def test_more_samples_continue_the_optuna_study(tmp_path, cifar10_dir):
    import optuna

    args = ["--preset", "cpu", *CI_SIZES, "--set", "corruption_subset=10", "--set",
            "ood_subset=100", "--data-dir", str(cifar10_dir), "--storage-path", str(tmp_path),
            "--name", "s"]  # fmt: skip
    r = run_job("search.py", *args, "--num-samples", "3")
    assert r.returncode == 0, r.stderr[-3000:]
    exp = tmp_path / "s"
    storage = f"sqlite:///{exp / 'optuna.db'}"
    before = [t.params for t in optuna.load_study(study_name="s", storage=storage).trials]
    old = pd.read_parquet(exp / RESULTS_FILE)

    r = run_job("search.py", *args, "--num-samples", "5", "--extend")
    assert r.returncode == 0, r.stderr[-3000:]
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert len(trials) == 5 and all(t.state.name == "COMPLETE" for t in trials)
    assert [t.params for t in trials[:3]] == before
    assert all(t.params not in before for t in trials[3:])  # new samples, not the first again
    results = pd.read_parquet(exp / RESULTS_FILE)
    assert len(results) == 5
    kept = results[results[TRIAL_ID].isin(old[TRIAL_ID])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, old)
    record = json.loads((exp / STUDY_FILE).read_text())
    assert record[EXTENSIONS][0]["options"] == {"--num-samples": [3, 5]}
    assert record["trials"] == 5 and len(list((exp / "extend-1").glob("train_*"))) == 2
    assert report(exp).returncode == 0


def test_more_seeds_run_only_the_new_trials_and_an_interrupted_extension_resumes(
    tmp_path, cifar10_dir, alpha_gamma_smoke_copy
):
    """A smoke grid from 1 to 2 seeds, interrupted after the extension's first checkpoint and
    resumed: it ends as an uninterrupted extension would (one real extension for both, each
    costs a smoke study's start)."""
    # the finished study: the session's real smoke study, copied (its command's options)
    base = ["--smoke", *CI_SIZES, "--data-dir", str(cifar10_dir), "--storage-path", str(tmp_path)]
    # the extension one trial at a time (concurrency may differ: not a defining option), so
    # that it can be interrupted after its first trial checkpointed, before the others ran
    args = [*base, "--max-concurrent", "1"]
    exp = alpha_gamma_smoke_copy
    old = {f: pd.read_parquet(exp / f) for f in (RESULTS_FILE, HISTORY_FILE)}
    trial_dirs = sorted(exp.glob("train_*"))
    old_files = {d.name: snapshot(d) for d in trial_dirs}
    first = json.loads((exp / STUDY_FILE).read_text())
    log = tmp_path / "extension.log"  # a file, not a pipe nobody reads while we wait
    proc = subprocess.Popen(
        [sys.executable, "tune_jobs/alpha_gamma.py", *args, "--seeds", "2", "--extend"],
        cwd=REPO,
        stdout=log.open("w"),
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    # Interrupt once the extension's first trial has checkpointed, while others have not run.
    while not list(exp.glob("extend-1/train_*/checkpoint_*")):
        assert proc.poll() is None, "the extension ended before it could be interrupted"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    assert f"extending 4 to 8 trial(s): 4 new in {exp}/extend-1" in log.read_text()
    record = json.loads((exp / STUDY_FILE).read_text())
    assert record["state"] == "interrupted" and record["trials"] == 8
    command = record["resume_command"]
    assert " --seeds 2 " in command and command.endswith(f"--storage-path {tmp_path}")
    # The saved tables are the finished run's, and the report says the study goes on.
    pd.testing.assert_frame_equal(pd.read_parquet(exp / RESULTS_FILE), old[RESULTS_FILE])
    r = run_job("alpha_gamma.py", *args, "--seeds", "3", "--extend")
    assert r.returncode == 2 and no_ray(r)
    assert r.stderr.endswith(f"is interrupted; allowed: --extend of a finished study; resume it "
                             f"first: {command}\n")  # fmt: skip
    assert report(exp).returncode == 0
    assert f"resume it with: {command}" in (exp / "report" / "index.html").read_text()

    r = run_job("alpha_gamma.py", *args, "--seeds", "2", "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    # The finished trials' folders are untouched, and only the new trials ran, in extend-1/.
    assert sorted(exp.glob("train_*")) == trial_dirs
    assert {d.name: snapshot(d) for d in trial_dirs} == old_files
    assert len(list((exp / "extend-1").glob("train_*"))) == 4
    for name, before in old.items():
        now = pd.read_parquet(exp / name)
        kept = now[now[TRIAL_ID].isin(before[TRIAL_ID])].reset_index(drop=True)
        pd.testing.assert_frame_equal(kept, before)
        assert set(now[TRIAL_ID]) - set(before[TRIAL_ID]) == set(now[now["seed"] == 1][TRIAL_ID])
    results = pd.read_parquet(exp / RESULTS_FILE)
    assert len(results) == 8 and results[TRIAL_ID].is_unique
    assert (results["status"] == "TERMINATED").all()
    assert (results["epochs_done"] == 2).all() and sorted(results["seed"]) == [0] * 4 + [1] * 4
    assert sorted(results.groupby(["alpha", "gamma"]).size()) == [2] * 4
    record = json.loads((exp / STUDY_FILE).read_text())
    assert (record["state"], record["trials"], record["options"]["--seeds"]) == ("finished", 8, 2)
    (ext,) = record[EXTENSIONS]
    assert (ext["folder"], ext["options"], ext["trials"]) == (
        "extend-1",
        {"--seeds": [1, 2]},
        [4, 8],
    )
    assert ext["when"] and ext["provenance"]["commit"] == record["provenance"]["commit"]
    assert record["provenance_earlier"][0] == first["provenance"]
    # The new trials' predictions (in extend-1/) are candidates of the ensemble like the old.
    candidates = load_candidates(load_experiment(exp))
    assert sorted(candidates.trial_ids) == sorted(results[TRIAL_ID])
    # One study for the report; --resume has nothing left to do.
    assert report(exp).returncode == 0
    r = run_job("alpha_gamma.py", *args, "--seeds", "2", "--resume")
    assert r.returncode == 0 and r.stdout.startswith("nothing to resume")


def test_an_extension_on_cloud_storage_takes_the_stored_optuna_study(tmp_path):
    from tune_jobs.runner import fetch_file

    stored, local = tmp_path / "stored", tmp_path / "local"
    stored.mkdir(), local.mkdir()
    (stored / "optuna.db").write_bytes(b"the stored study")
    (local / "optuna.db").write_bytes(b"an older local copy")
    fetch_file(str(stored), "optuna.db", local)
    assert (local / "optuna.db").read_bytes() == b"the stored study"
    fetch_file(str(stored), "absent.db", local)
    assert not (local / "absent.db").exists()
