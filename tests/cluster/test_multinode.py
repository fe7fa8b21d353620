"""Multi-node behaviour of the real study scripts, on one machine (issue 5).

`ray.cluster_utils.Cluster` starts a head node with no CPUs, so no trial can run there, and
worker nodes with one CPU each: every trial must go to a worker, two trials to two workers.
The job scripts join it with `--address`, as they would join a real cluster, and write to a
local `--storage-path` that every node of this machine sees (a shared file system, in effect).

All nodes here share one IP, so the `node` column cannot show where a trial ran; the Ray node
ID (`node_id`, in the parquet files and in every line of a trial's result.json) does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from tests.tune_jobs.conftest import REPO, run_job

pytestmark = pytest.mark.slow

WORKERS = 2  # worker nodes, one CPU each
STORE = 400 * 2**20  # object store per node: the CIFAR-10 arrays (~185 MB) plus room
SMOKE_EPOCHS = 2
POLL_S = 0.1


# ----------------------------------------------------------------------------------------
# The cluster
# ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _address_file_kept():
    """Leave /tmp/ray/ray_current_cluster as it was before the `with` block.

    Starting a head (and `ray start`) records its address there, and any plain `ray.init()`
    on this machine would then join our test cluster; our jobs get `--address`, so they need
    no record, and other runs on this machine must not be steered to (or away from) ours.
    """
    from ray._common.utils import get_ray_address_file

    path = Path(get_ray_address_file(None))
    before = path.read_text() if path.exists() else None
    try:
        yield
    finally:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(before)


def _add_worker(cluster):
    with _address_file_kept():
        return cluster.add_node(num_cpus=1, object_store_memory=STORE)


@pytest.fixture(scope="module")
def ray_cluster(data_dir):
    """A CPU-less head and WORKERS one-CPU workers, shared by the tests of this module."""
    from ray.cluster_utils import Cluster

    with _address_file_kept():
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 0,
                "object_store_memory": STORE,
                "include_dashboard": False,
            },
        )
    try:
        for _ in range(WORKERS):
            _add_worker(cluster)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        with _address_file_kept():
            cluster.shutdown()


@pytest.fixture
def cluster(ray_cluster):
    """The shared cluster with exactly WORKERS live one-CPU workers (a test may remove one),
    each CPU free again (the trials of an earlier test gone)."""
    while len(ray_cluster.worker_nodes) < WORKERS:
        _add_worker(ray_cluster)
    while len(ray_cluster.worker_nodes) > WORKERS:
        ray_cluster.remove_node(ray_cluster.worker_nodes[-1])
    ray_cluster.wait_for_nodes()

    def idle():
        free = ray_cluster.global_state.available_resources_per_node()
        return all(free.get(n, {}).get("CPU") == 1 for n in worker_ids(ray_cluster))

    wait_for(idle, "every worker's CPU to be free", timeout=60)
    return ray_cluster


def worker_ids(cluster) -> set[str]:
    return {n.node_id for n in cluster.worker_nodes}


# ----------------------------------------------------------------------------------------
# Jobs
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_dir(cifar10_dir: Path) -> Path:
    return cifar10_dir


def job_args(data_dir: Path, storage: Path, cluster, *extra: str) -> list[str]:
    return [
        "--smoke",
        # The suite's sizes (the preset's own learn, ~2 min); a later --epochs in `extra` wins.
        *("--set", "train_subset=500", "--set", "test_subset=250", "--epochs", "2"),
        "--data-dir",
        str(data_dir),
        "--storage-path",
        str(storage),
        "--address",
        cluster.address,
        *extra,
    ]


@pytest.fixture
def start_job(tmp_path):
    """Start `python tune_jobs/<script> args` in its own process group; killed at teardown."""
    procs: list[subprocess.Popen] = []

    def start(script: str, *args: str) -> subprocess.Popen:
        log = open(tmp_path / f"{script}-{len(procs)}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, f"tune_jobs/{script}", *args],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.log_path = log.name  # type: ignore[attr-defined]
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def log_tail(proc: subprocess.Popen, n: int = 4000) -> str:
    return Path(proc.log_path).read_text()[-n:]  # type: ignore[attr-defined]


def wait_for(
    cond: Callable[[], object],
    what: str,
    proc: subprocess.Popen | None = None,
    timeout: float = 240,
):
    """Poll `cond` until it returns something truthy; fail if `proc` ends first or on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"job ended (rc={proc.returncode}) before {what}:\n{log_tail(proc)}")
        time.sleep(POLL_S)
    pytest.fail(
        f"timed out after {timeout}s waiting for {what}"
        + (f":\n{log_tail(proc)}" if proc is not None else "")
    )


def reports(exp: Path) -> dict[str, list[dict]]:
    """Each trial's raw reports (its result.json lines, in order), by trial ID.

    A line being written while we read is skipped; the next poll sees it whole.
    """
    out: dict[str, list[dict]] = {}
    for path in sorted(exp.glob("train_*/result.json")):
        lines = []
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                lines.append(json.loads(line))
        if lines:
            out[lines[0]["trial_id"]] = lines
    return out


def experiment_state(exp: Path) -> dict[str, dict]:
    """Tune's experiment snapshot (what `--resume` restores): runtime data by trial ID."""
    path = max(exp.glob("experiment_state-*.json"))  # the newest (a timestamp in the name)
    out = {}
    for trial_json, runtime_json in json.loads(path.read_text())["trial_data"]:
        out[json.loads(trial_json)["trial_id"]] = json.loads(runtime_json)
    return out


def read_tables(exp: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(exp / "results.parquet"), pd.read_parquet(exp / "history.parquet")


def assert_complete(results: pd.DataFrame, history: pd.DataFrame, epochs: int) -> None:
    """Every trial once, TERMINATED after all its epochs, each epoch once in the history."""
    assert results["trial_id"].is_unique
    assert (results["status"] == "TERMINATED").all(), results["error"].tolist()
    assert (results["epochs_done"] == epochs).all(), results["epochs_done"].tolist()
    for trial_id, h in history.groupby("trial_id"):
        assert h["epoch"].tolist() == list(range(1, epochs + 1)), trial_id
    assert set(history["trial_id"]) == set(results["trial_id"])


# ----------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------
def test_smoke_study_runs_trials_on_several_nodes(cluster, data_dir, tmp_path):
    r = run_job("ensemble_size.py", *job_args(data_dir, tmp_path, cluster), timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results, history = read_tables(tmp_path / "ensemble_size_smoke")
    assert len(results) == 2
    assert_complete(results, history, SMOKE_EPOCHS)

    # Two one-CPU workers, two concurrent trials: one trial per worker, none on the CPU-less
    # head. The IP (`node`) is the same for every node of this machine; the node ID is not.
    assert results["node_id"].nunique() == 2
    assert set(results["node_id"]) == worker_ids(cluster)
    assert results["node"].notna().all()
    # Each trial's epochs all ran where the trial ran.
    per_trial = history.groupby("trial_id")["node_id"].agg(set)
    assert per_trial.to_dict() == {
        t: {n} for t, n in zip(results["trial_id"], results["node_id"], strict=True)
    }


def test_trial_of_a_removed_node_continues_from_its_checkpoint(
    cluster, data_dir, tmp_path, start_job
):
    epochs = 4
    proc = start_job(
        "ensemble_size.py",
        *job_args(data_dir, tmp_path, cluster, "--epochs", str(epochs), "--max-failures", "2"),
    )
    exp = tmp_path / "ensemble_size_smoke"

    def trial_mid_way():
        for trial_id, lines in reports(exp).items():
            if lines[-1]["epoch"] < epochs - 1:  # checkpointed, with epochs left to run
                return trial_id, lines[-1]["node_id"], lines[-1]["epoch"]
        return None

    victim, node_id, epochs_before = wait_for(trial_mid_way, "a trial checkpointed", proc)
    [node] = [n for n in cluster.worker_nodes if n.node_id == node_id]
    cluster.remove_node(node, allow_graceful=False)  # the node vanishes, as a crash would
    _add_worker(cluster)  # the replacement: capacity for the trial to continue
    assert proc.wait(timeout=300) == 0, log_tail(proc)

    # The raw reports of the moved trial. Tune reports at least once: it logs a function
    # trial's result (and its checkpoint, already persisted by the trial), then registers that
    # checkpoint in a second call to the trial's actor (TuneController._schedule_trial_save).
    # A node that vanishes between the two loses the registration, and the trial restarts from
    # the checkpoint before: the epoch it had last reported on the old node is reported again
    # on the new one. So: epochs 1..k in order on the old node, then k or k + 1 .. `epochs` in
    # order on one live node, where the trial was restored (its iteration count since restore
    # starts again at 1) from the checkpoint of the epoch before its first report there.
    lines = reports(exp)[victim]
    nodes = [x["node_id"] for x in lines]
    moved = next((i for i, n in enumerate(nodes) if n != node_id), None)
    assert moved is not None and moved >= epochs_before, (epochs_before, lines)
    assert set(nodes[:moved]) == {node_id} and len(set(nodes[moved:])) == 1
    assert nodes[moved] in worker_ids(cluster)  # a live node (the removed one is not)
    old, new = [x["epoch"] for x in lines[:moved]], [x["epoch"] for x in lines[moved:]]
    assert old == list(range(1, moved + 1)), lines
    assert new[0] in (moved, moved + 1) and new == list(range(new[0], epochs + 1)), lines
    assert lines[moved]["iterations_since_restore"] == 1
    assert lines[moved]["training_iteration"] == new[0]
    assert experiment_state(exp)[victim]["num_failures"] == 1

    results, history = read_tables(exp)
    assert len(results) == 2
    assert_complete(results, history, epochs)
    # The tables keep each epoch once, as last reported: a repeated epoch is the new node's.
    moved_history = history[history["trial_id"] == victim].sort_values("epoch")
    assert moved_history["node_id"].tolist() == [node_id] * (new[0] - 1) + nodes[moved:]
    assert results.set_index("trial_id").loc[victim, "node_id"] == nodes[-1]


def staged_results(cluster, exp: Path) -> dict[str, bytes]:
    """The driver's own copy of each trial's result.json, by trial folder name.

    Tune writes reports into a staging folder in the driver's Ray session (on this machine, the
    cluster's session) and copies that folder to the storage path now and then; what is
    staged but not yet copied is what a killed driver leaves behind.
    """
    session = Path(cluster.head_node.get_session_dir_path())
    out = {}
    for trial in exp.glob("train_*"):
        for path in session.glob(
            f"artifacts/*/{exp.name}/driver_artifacts/{trial.name}/result.json"
        ):
            out[trial.name] = path.read_bytes()
    return out


def stored_results(exp: Path) -> dict[str, bytes]:
    """Each trial's result.json in the storage path, by trial folder name."""
    return {
        d.name: (d / "result.json").read_bytes() if (d / "result.json").exists() else b""
        for d in exp.glob("train_*")
    }


def test_killed_driver_resumes_without_losing_epochs(cluster, data_dir, tmp_path, start_job):
    epochs = 4
    args = job_args(data_dir, tmp_path, cluster, "--epochs", str(epochs))
    proc = start_job("ensemble_size.py", *args)
    exp = tmp_path / "ensemble_size_smoke"

    # Kill where the killed run leaves the most behind: Tune's snapshot in the storage path
    # (what --resume restores) has a checkpoint of every trial, some trial has epochs left,
    # and the driver holds a report it has not copied to the storage path yet (issue 9, item
    # 7: a resumed run copied such reports into the experiment folder). The driver is stopped
    # (SIGSTOP) before the check, so that its copy cannot change the files while they are
    # read; if the storage path is half-way through a copy, it runs on and we look again.
    def kill_point():
        try:
            snapshot = {
                t: (s.get("last_result") or {}).get("epoch", 0)
                for t, s in experiment_state(exp).items()
            }
        except (ValueError, OSError):  # not written yet (or a half-written JSON)
            return None
        got, stored, staged = reports(exp), stored_results(exp), staged_results(cluster, exp)
        ok = (
            len(snapshot) == 2
            and 1 <= min(snapshot.values()) < epochs
            and all(t in got and got[t][-1]["epoch"] >= e for t, e in snapshot.items())
            # whole lines, each as the driver wrote it: no copy under way
            and all(
                b.endswith(b"\n") and staged.get(n, b"").startswith(b) for n, b in stored.items()
            )
            and any(len(staged.get(n, b"")) > len(b) for n, b in stored.items())
        )
        return (snapshot, staged) if ok else None

    def stopped_at_kill_point():
        if kill_point() is None:
            return None
        os.kill(proc.pid, signal.SIGSTOP)
        found = kill_point()
        if found is None:
            os.kill(proc.pid, signal.SIGCONT)
        return found

    snapshot, staged = wait_for(stopped_at_kill_point, "a report staged but not stored", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    # The killed run's trials are stopped by Ray once it has noticed the driver's death; until
    # then they may still write checkpoints. Wait for that (the GCS's tables) before reading.
    def killed_run_stopped():
        gcs = cluster.global_state
        jobs = [j for j in gcs.job_table() if j["DriverPid"] == proc.pid]
        alive = gcs.actor_table(None, actor_state_name="ALIVE").values()
        ids = {j["JobID"] for j in jobs}
        return jobs and all(j["IsDead"] for j in jobs) and not any(a["JobID"] in ids for a in alive)

    wait_for(killed_run_stopped, "the killed run's actors to be stopped")
    assert {t: s["last_result"]["epoch"] for t, s in experiment_state(exp).items()} == snapshot
    before = reports(exp)
    assert sorted(before) == sorted(snapshot), (snapshot, before)
    assert not (exp / "results.parquet").exists()
    unstored = {n: staged.get(n, b"")[len(b) :] for n, b in stored_results(exp).items()}
    assert any(unstored.values())  # the kill point: reports the storage path never got

    r = run_job("ensemble_size.py", *args, "--resume", timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results, history = read_tables(exp)
    assert sorted(results["trial_id"]) == sorted(before)  # every trial exactly once
    assert_complete(results, history, epochs)

    # No finished epoch lost: every epoch reported before the kill is in the history with
    # the metrics it had (training is deterministic, so even a re-run epoch matches).
    h = history.set_index(["trial_id", "epoch"])
    for trial_id, lines in before.items():
        for x in lines:
            row = h.loc[(trial_id, x["epoch"])]
            assert row["test_acc"] == pytest.approx(x["test_acc"], rel=1e-6)
            assert row["train_loss"] == pytest.approx(x["train_loss"], rel=1e-6)
    # One writer after the other: each trial's reports are what the storage path held at the
    # kill, unchanged, then those of the trial restored from the snapshot's checkpoint (its
    # iteration count since restore starts again at 1), from the epoch after that checkpoint
    # to the last. Nothing of the killed run that the storage path did not hold appears.
    after = reports(exp)
    for trial_id, done in snapshot.items():
        lines = after[trial_id]
        assert lines[: len(before[trial_id])] == before[trial_id], (before[trial_id], lines)
        resumed = [
            (x["epoch"], x["iterations_since_restore"]) for x in lines[len(before[trial_id]) :]
        ]
        # The restore point is the trial's last registered checkpoint: the epoch after the
        # snapshot's last result, or (when the kill came between a report and its checkpoint's
        # registration) an epoch before it, re-run with the same numbers (checked above).
        start = resumed[0][0] if resumed else epochs + 1
        assert 1 <= start <= done + 1, (done, lines)
        assert resumed == [(e, e - start + 1) for e in range(start, epochs + 1)], (done, lines)
        assert [x["epoch"] for x in lines[:done]] == list(range(1, done + 1)), lines


# ----------------------------------------------------------------------------------------
# A node that cannot see the storage folder
# ----------------------------------------------------------------------------------------
def _can_mask_folders(tmp: Path) -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    tmp.mkdir(exist_ok=True)
    probe = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "mount",
            "-t",
            "tmpfs",
            "tmpfs",
            str(tmp),
        ],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.fixture
def blind_node(cluster, tmp_path):
    """A worker node in its own mount namespace, where `tmp_path/private` is an empty tmpfs.

    Yields (the folder it cannot see, its node ID); the node is stopped at teardown.
    """
    if not _can_mask_folders(tmp_path / "probe"):
        pytest.skip("needs root and `unshare --mount` to hide a folder from one node")
    private, log = tmp_path / "private", tmp_path / "blind_node.log"
    private.mkdir()
    known = {n.node_id for n in cluster.list_all_nodes()}
    script = (
        'mount -t tmpfs tmpfs "$1" && exec "$2" -m ray.scripts.scripts start '
        '--address="$3" --num-cpus=1 --object-store-memory="$4" --disable-usage-stats '
        "--block"
    )
    proc, node_id = None, None
    try:
        with _address_file_kept(), open(log, "w") as out:
            proc = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    script,
                    "sh",
                    str(private),
                    sys.executable,
                    cluster.address,
                    str(STORE),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

            def joined():
                if proc.poll() is not None:
                    pytest.fail(f"`ray start` in a mount namespace exited:\n{log.read_text()}")
                # "block forever" is printed once the node runs (and has recorded its address)
                new = cluster.global_state._live_node_ids() - known
                return new if "block forever" in log.read_text() else None

            [node_id] = wait_for(joined, "the node in its own mount namespace", timeout=60)
        yield private, node_id
    finally:
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops its node
            try:
                proc.wait(timeout=30)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # anything left in its group
        if node_id is not None:
            wait_for(
                lambda: node_id not in cluster.global_state._live_node_ids(),
                "the node to leave",
                timeout=60,
            )


def test_storage_one_node_cannot_see_is_refused_before_any_trial(cluster, data_dir, blind_node):
    private, node_id = blind_node
    storage = private / "ray_results"
    r = run_job("ensemble_size.py", *job_args(data_dir, storage, cluster), timeout=300)
    assert r.returncode == 2, r.stdout[-3000:] + r.stderr[-3000:]
    assert "cloud storage" in r.stderr and "shared file system" in r.stderr
    assert node_id[:8] in r.stderr  # the node that cannot see it is named
    # Refused before the Tuner was built: no trial, no experiment folder, no marker left.
    assert "trial(s) in" not in r.stdout
    assert not (storage / "ensemble_size_smoke").exists()
    assert list(storage.rglob("train_*")) == [] and list(storage.glob(".reachable-*")) == []
