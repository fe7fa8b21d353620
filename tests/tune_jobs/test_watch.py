"""Watching a study, without running one: the swept fields that the progress table, TensorBoard
and `python -m tune_jobs` show, the lines printed at start, and `--mlflow-uri`'s checks (the
study runs are in test_smoke.py)."""

import os
import subprocess
import sys

import pytest

from tune_jobs import alpha_gamma, optimizers, sharing
from tune_jobs.errors import JobError
from tune_jobs.options import JobOptions
from tune_jobs.record import study_record
from tune_jobs.resume import check_resume, defining_options
from tune_jobs.study import swept_fields

from .conftest import REPO


def test_swept_fields_name_a_bundles_fields():
    opts = JobOptions(seeds=2)
    assert swept_fields(optimizers.make_study(opts).space) == {
        "cell/ensemble": "ensemble",
        "cell/ensemble_size": "ensemble_size",
        "cell/optimizer": "optimizer",
        "cell/lr": "lr",
        # momentum and nesterov: set by the SGD cells only, so no column (Ray's table looks
        # every column up in every trial)
        "seed": "seed",
    }
    assert swept_fields(sharing.make_study(JobOptions()).space) == {
        "sharing/sharing_network": "sharing_network",
        "sharing/sharing_ensemble": "sharing_ensemble",
    }
    assert swept_fields(alpha_gamma.make_study(JobOptions()).space) == {
        "alpha": "alpha",
        "gamma": "gamma",
    }


def test_start_lines_say_where_to_watch():
    from tune_jobs.watch import start_lines

    local = start_lines("/r/my study", "127.0.0.1:8266", None, None, "my study")
    assert local == [
        "experiment: /r/my study",
        "tensorboard: tensorboard --logdir '/r/my study'",
        "ray dashboard: http://127.0.0.1:8266",
    ]
    assert "not running" in start_lines("/r/x", "", None, None, "x")[2]
    cluster = start_lines("s3://b/x", "127.0.0.1:8265", "auto", "http://mlf:5000", "x")
    assert "`ray dashboard cluster.yaml`" in cluster[2] and "127.0.0.1:8265" in cluster[2]
    assert cluster[3] == "mlflow: runs of experiment 'x' in http://mlf:5000"


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("mlruns", "not a URI of"),
        ("ftp://host/x", "not a URI of"),
        ("file://relative/mlruns", "file: needs an absolute path"),
        ("http://", "no host"),
    ],
)
def test_a_bad_mlflow_uri_is_refused(uri, why):
    with pytest.raises(JobError, match=rf"^--mlflow-uri='{uri}': {why}.*; allowed: file:///"):
        JobOptions(mlflow_uri=uri).check()


def test_a_file_store_where_no_folder_can_be_made_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(JobError, match=r"--mlflow-uri=.*a file, not a folder"):
        JobOptions(mlflow_uri=f"file://{blocker}/mlruns").check()
    JobOptions(mlflow_uri=f"file://{tmp_path}/mlruns").check()
    JobOptions(mlflow_uri=f"sqlite:///{tmp_path}/mlflow.db").check()


def test_mlflow_missing_is_refused_naming_the_extra(monkeypatch, tmp_path):
    # None in sys.modules is Python's own way to make a package unimportable (find_spec: None).
    monkeypatch.setitem(sys.modules, "mlflow", None)
    missing = r'mlflow package is not installed; allowed: .* after pip install -e "\.\[mlflow\]"'
    with pytest.raises(JobError, match=missing):
        JobOptions(mlflow_uri=f"file://{tmp_path}/mlruns").check()


def test_mlflow_uri_may_differ_on_resume(tmp_path):
    study = alpha_gamma.make_study(JobOptions(smoke=True))
    started = JobOptions(smoke=True, name="x")
    resumed = JobOptions(smoke=True, name="x", resume=True, mlflow_uri=f"file://{tmp_path}")
    assert "--mlflow-uri" not in defining_options(study, started)
    check_resume(study_record(study, started), study, resumed)  # no JobError


def test_a_study_script_refuses_a_bad_mlflow_uri_in_one_line_before_ray(tmp_path):
    r = subprocess.run(
        [sys.executable, "tune_jobs/alpha_gamma.py", "--smoke", "--mlflow-uri", "mlruns"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RAY_TMPDIR": str(tmp_path)},
    )
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "error: --mlflow-uri='mlruns': not a URI of ['file', 'sqlite', 'http', 'https', "
        "'databricks']; allowed: file:///absolute/folder, sqlite:///path/mlflow.db, "
        "http(s)://host:port of a tracking server, or databricks"
    ]
    assert not any(tmp_path.iterdir())  # Ray never started


class NotToBeRead(list):
    """Trials that fail the test if read: within PROGRESS_EVERY_S of the last table the
    progress table must not pass over the trials (Tune asks at every step of its loop)."""

    def __iter__(self):
        raise AssertionError("the trials were read within the progress table's interval")


def test_the_progress_table_prints_when_something_changed_at_most_every_interval():
    from ray.tune.experiment import Trial

    from tune_jobs.watch import PROGRESS_EVERY_S, ProgressTable

    trials = [Trial("train", stub=True) for _ in range(3)]
    table = ProgressTable(None)
    assert table.should_report(trials)  # the first table
    trials[1].update_last_result({"epoch": 1, "training_iteration": 1})
    assert not table.should_report(NotToBeRead(trials))  # within the interval: not read
    table._last_report_time -= PROGRESS_EVERY_S  # as if the interval had passed
    assert table.should_report(trials)  # a trial reported since the last table
    table._last_report_time -= PROGRESS_EVERY_S
    assert not table.should_report(trials)  # nothing changed since
    trials[2].set_status(Trial.RUNNING)
    assert table.should_report(trials)  # a trial's status changed
    assert table.should_report(NotToBeRead(trials), done=True)  # the last table, always
