"""How many trials a search keeps running or waiting for resources at once.

Ray Tune lets a searcher other than grid or random search (Optuna's, here) have ONE trial
waiting for resources at a time (`TUNE_MAX_PENDING_TRIALS_PG`'s default for searchers,
`ray.tune.execution.tune_controller._get_max_pending_trials`), unless the searcher is wrapped
in a `ConcurrencyLimiter`, whose `max_concurrent` it then takes. On an autoscaling cluster a
waiting trial is what asks the autoscaler for a node: with one at a time a search grows the
cluster by one node per trial start. So every search is wrapped in a limiter sized to what the
cluster can run at its largest: `--max-concurrent` when given, else the trials that fit on the
live nodes plus on every worker the autoscaler may still launch (`max_workers` of each node
type in the launcher's config, `tune_jobs.resources.cluster_resources`).
"""

from __future__ import annotations

from collections.abc import Mapping

from tune_jobs.preflight import NODE_TYPE, trials_per_node

__all__ = ["search_concurrency"]


def search_concurrency(
    trials: int,
    cpus: float,
    gpus: float,
    nodes: Mapping[str, Mapping[str, float]],
    most: int | None,
) -> int:
    """Trials a search runs or keeps pending at once: `most` (--max-concurrent) if given, else
    the trials the cluster holds at its largest (live nodes, and each launchable node type
    times its `max_workers`; a type of unknown size counts one trial per worker), at least 1,
    at most `trials`."""
    if most:
        return max(1, min(trials, most))
    slots = 0
    for name, node in nodes.items():
        k = trials_per_node(node, cpus, gpus)
        if name.startswith(NODE_TYPE):
            k = (1 if k is None else k) * int(node.get("max_workers", 0))
        slots += k if k is not None else 0
    return max(1, min(trials, slots))
