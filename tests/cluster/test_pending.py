"""A search fills the cluster (issue 25): its trials at once sized from --max-concurrent or the
cluster at its largest (tune_jobs.pending), and Tune's own rule for pending trials giving a
search that many, where without the limiter it gives one."""

from __future__ import annotations

import math

import pytest
import ray
from ray.tune.execution.tune_controller import _get_max_pending_trials
from ray.tune.search import SearchGenerator

from tune_jobs import resources, search
from tune_jobs.options import JobOptions
from tune_jobs.pending import search_concurrency
from tune_jobs.preflight import NODE_TYPE
from tune_jobs.resources import cluster_resources
from tune_jobs.runner import tune_config

LIVE = {"10.0.0.1:abc": {"CPU": 8.0, "GPU": 2.0}, "10.0.0.2:def": {"CPU": 0.0, "GPU": 0.0}}
GPU_TYPE = {NODE_TYPE + "gpu": {"CPU": 48.0, "GPU": 4.0, "max_workers": 25.0}}


@pytest.mark.parametrize(
    "trials,cpus,gpus,nodes,most,expected",
    [
        (1000, 1.0, 0.0, LIVE, 3, 3),  # --max-concurrent wins
        (2, 1.0, 0.0, LIVE, 3, 2),  # never more than the trials
        (1000, 1.0, 0.0, LIVE, None, 8),  # live nodes only: 8 CPUs (a 0-CPU head holds none)
        (1000, 1.0, 0.5, LIVE, None, 4),  # GPUs bound it: 2 / 0.5
        (1000, 4.0, 1.0, {**LIVE, **GPU_TYPE}, None, 2 + 25 * 4),  # plus 25 workers of 4 GPUs
        (1000, 4.0, 0.0, {**LIVE, **GPU_TYPE}, None, 2 + 25 * 12),  # 48 CPUs / 4 a worker
        (
            1000,
            1.0,
            0.0,
            {NODE_TYPE + "cpu": {"CPU": math.inf, "GPU": 0.0, "max_workers": 7}},
            None,
            7,
        ),  # a type of unknown size: one trial per worker
        (1000, 1.0, 0.0, {}, None, 1),  # nothing known: at least one
    ],
)
def test_search_concurrency(trials, cpus, gpus, nodes, most, expected):
    assert search_concurrency(trials, cpus, gpus, nodes, most) == expected


def test_tune_gives_a_search_its_concurrency_as_pending_trials(tmp_path):
    """Tune's own rule (what asks an autoscaler for nodes): a search without a limiter gets one
    pending trial, ours as many as the cluster holds."""
    study = search.make_study(JobOptions())
    bare = study.make_search_alg(tmp_path / "bare")
    assert _get_max_pending_trials(SearchGenerator(bare)) == 1  # the trap
    tc = tune_config(study, JobOptions(), tmp_path, at_once=102)
    assert _get_max_pending_trials(SearchGenerator(tc.search_alg)) == 102
    tc = tune_config(study, JobOptions(max_concurrent=5), tmp_path / "limited")
    assert _get_max_pending_trials(SearchGenerator(tc.search_alg)) == 5


@pytest.fixture(scope="module")
def fake_gpu_cluster():
    """A head with no CPUs and two workers of 4 logical CPUs and 2 fake GPUs each."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=4, num_gpus=2, object_store_memory=80 * 2**20)
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow
def test_the_cluster_at_its_largest_counts_the_workers_it_may_launch(
    fake_gpu_cluster, tmp_path, monkeypatch
):
    config = tmp_path / "ray_bootstrap_config.yaml"
    config.write_text(
        "available_node_types:\n"
        "  head: {min_workers: 0, max_workers: 0, resources: {CPU: 2}}\n"
        "  gpu: {min_workers: 0, max_workers: 10, resources: {CPU: 8, GPU: 4}}\n"
    )
    monkeypatch.setattr(resources, "BOOTSTRAP_CONFIG", config)
    nodes = cluster_resources()
    live = {k: v for k, v in nodes.items() if not k.startswith(NODE_TYPE)}
    assert sorted((v["CPU"], v["GPU"]) for v in live.values()) == [(0, 0), (4, 2), (4, 2)]
    assert nodes[NODE_TYPE + "gpu"] == {"CPU": 8.0, "GPU": 4.0, "max_workers": 10.0}
    # 1 CPU and 0.5 GPU a trial: 4 on each live worker, 8 on each of 10 launchable ones
    assert search_concurrency(1000, 1.0, 0.5, nodes, None) == 2 * 4 + 10 * 8


class _Stop(Exception):
    pass


class _CountPending(ray.tune.Callback):
    """Stops the run once `want` trials wait at once (or after `most_steps` controller steps),
    remembering the most that waited."""

    def __init__(self, want: int, most_steps: int = 300) -> None:
        self.want, self.most_steps, self.most = want, most_steps, 0

    def on_step_end(self, iteration, trials, **info):
        self.most = max(self.most, sum(t.status == "PENDING" for t in trials))
        if self.most >= self.want or iteration >= self.most_steps:
            raise _Stop


@pytest.mark.slow
def test_a_search_keeps_its_concurrency_pending_on_a_cluster_that_must_grow(
    fake_gpu_cluster, tmp_path
):
    """Trials that ask for a resource no live node has (as a GPU trial on a cluster whose GPU
    workers the autoscaler has not launched yet) wait: the search keeps as many waiting as it
    may run at once, each a request the autoscaler sees."""
    study = search.make_study(JobOptions())
    tc = tune_config(study, JobOptions(), tmp_path, at_once=6)
    assert _most_pending(tc.search_alg, tmp_path / "ours", want=6) == 6
    # the searcher alone, as before: one waits, however many controller steps pass
    bare = study.make_search_alg(tmp_path / "bare")
    assert _most_pending(bare, tmp_path / "bare", want=2, most_steps=30) == 1


def _most_pending(search_alg, storage, want: int, most_steps: int = 300) -> int:
    from ray import tune

    count = _CountPending(want, most_steps)
    tuner = tune.Tuner(
        tune.with_resources(lambda config: None, {"CPU": 1, "not_launched_yet": 1}),
        param_space=search.make_study(JobOptions()).space,
        tune_config=tune.TuneConfig(
            search_alg=search_alg, num_samples=50, metric="val_acc", mode="max"
        ),
        run_config=tune.RunConfig(storage_path=str(storage), callbacks=[count]),
    )
    with pytest.raises(_Stop):
        tuner.fit()
    return count.most
