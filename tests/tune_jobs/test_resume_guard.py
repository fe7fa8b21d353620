"""`--resume` clears what a killed run left (issue 9, item 7), with Ray's GCS tables faked."""

from types import SimpleNamespace

import pytest

from tune_jobs import resume_guard
from tune_jobs.errors import JobError


class FakeGcs:
    """A killed job (01000000) whose trial actor stays alive for `alive_polls` polls."""

    def __init__(self, alive_polls: float):
        self.alive_polls, self.polls = alive_polls, 0

    def job_table(self):
        return [{"JobID": "01000000", "IsDead": True}, {"JobID": "02000000", "IsDead": False}]

    def actor_table(self, actor_id, actor_state_name=None):
        assert actor_id is None and actor_state_name == "ALIVE"
        self.polls += 1
        live = {"b": {"JobID": "02000000", "IsDetached": False}}  # a live job's: not waited for
        live["d"] = {"JobID": "01000000", "IsDetached": True}  # detached: outlives its job
        if self.polls <= self.alive_polls:
            live["a"] = {"JobID": "01000000", "IsDetached": False}
        return live


@pytest.fixture
def staging(tmp_path, monkeypatch):
    """A stale staging folder that ExperimentAnalysis names for every trial of the experiment
    in tmp_path/exp (whose state Tune saved)."""
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "experiment_state-2026-12-03_19-10-20.json").write_text("{}")
    folder = tmp_path / "driver_artifacts"
    (folder / "train_x").mkdir(parents=True)
    (folder / "train_x" / "result.json").write_text('{"epoch": 3}\n')
    trial = SimpleNamespace(local_experiment_path=str(folder))
    monkeypatch.setattr(
        resume_guard, "ExperimentAnalysis", lambda path: SimpleNamespace(trials=[trial])
    )
    return folder


def test_resume_waits_for_the_killed_jobs_actors_then_drops_the_staging(
    staging, monkeypatch, capsys, tmp_path
):
    gcs = FakeGcs(alive_polls=3)
    monkeypatch.setattr(resume_guard.ray._private.state, "state", gcs)
    resume_guard.clear_killed_run(str(tmp_path / "exp"), poll_s=0)
    assert gcs.polls == 4
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "01000000" in out and "02000000" not in out
    assert not staging.exists()


def test_resume_refuses_while_the_killed_jobs_actors_live(staging, monkeypatch, tmp_path):
    monkeypatch.setattr(resume_guard.ray._private.state, "state", FakeGcs(alive_polls=float("inf")))
    exp = str(tmp_path / "exp")
    with pytest.raises(JobError, match="01000000.*still alive") as e:
        resume_guard.clear_killed_run(exp, timeout_s=0, poll_s=0)
    assert "\n" not in str(e.value) and exp in str(e.value)
    assert staging.exists()  # nothing touched


def test_has_experiment_state_looks_for_tunes_state_file(tmp_path):
    """A study stopped before Tune saved its first state (Ctrl-C as it began) has its folder
    and tuner.pkl but no experiment_state-*.json: --resume starts it afresh (runner)."""
    has_experiment_state = resume_guard.has_experiment_state
    assert not has_experiment_state(str(tmp_path / "absent"))
    (tmp_path / "tuner.pkl").write_bytes(b"")
    assert not has_experiment_state(str(tmp_path))
    (tmp_path / "experiment_state-2026-12-03_19-10-20.json").write_text("{}")
    assert has_experiment_state(str(tmp_path))


def test_a_resume_of_a_study_tune_never_saved_waits_for_actors_and_drops_nothing(
    staging, monkeypatch, tmp_path
):
    """Stopped before Tune saved any state: the killed job's actors are still waited for;
    there is no staging folder Tune could name, so none is removed."""
    gcs = FakeGcs(alive_polls=1)
    monkeypatch.setattr(resume_guard.ray._private.state, "state", gcs)
    resume_guard.clear_killed_run(str(tmp_path / "never_saved"), poll_s=0)
    assert gcs.polls == 2 and staging.exists()
