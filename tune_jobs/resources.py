"""What the machines offer a study: GPUs on this machine and on the cluster, and storage that
every node can reach. Used by `tune_jobs.runner`; the cluster functions need Ray started."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import ray
import torch
import yaml
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from core.errors import refusal
from tune_jobs.options import JobError

# Written on the head by `ray up`: the launcher's config, node types with their resources.
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")


def local_gpus() -> int:
    return torch.cuda.device_count()


def cluster_gpus() -> dict[str, float]:
    """GPUs per node: the live nodes, plus the node types the autoscaler may still launch.

    Right after `ray up` the GPU workers (min 0) do not exist yet; the launcher's config on
    the head (`~/ray_bootstrap_config.yaml`, resources filled in by `ray up`) says what can.
    """
    gpus = {
        n["NodeManagerAddress"]: n["Resources"].get("GPU", 0.0) for n in ray.nodes() if n["Alive"]
    }
    bootstrap = BOOTSTRAP_CONFIG.expanduser()
    if bootstrap.exists():
        types = (yaml.safe_load(bootstrap.read_text()) or {}).get("available_node_types", {})
        for name, spec in types.items():
            if spec.get("max_workers", 0) > 0 or spec.get("min_workers", 0) > 0:
                gpus[f"node type {name}"] = float((spec.get("resources") or {}).get("GPU", 0))
    return gpus


def check_gpus(per_trial: float, most: float, where: str) -> None:
    """Refuse `--gpus-per-trial` above the GPUs that `where` has at most."""
    if per_trial > most:
        raise JobError(
            refusal(
                "--gpus-per-trial",
                per_trial,
                f"a value <= {most:g} (fractions such as 0.25 share one GPU)",
                why=f"{where} has at most {most:g} GPU(s)",
            )
        )


def check_storage_reachable(root: str) -> None:
    """Refuse a local storage path that some node of a multi-node cluster cannot see.

    A marker file is written here and looked for by a task pinned to every alive node: a
    shared file system passes, a folder private to the head node does not.
    """
    nodes = [n for n in ray.nodes() if n["Alive"]]
    if len(nodes) <= 1:
        return
    Path(root).mkdir(parents=True, exist_ok=True)
    marker = Path(root) / f".reachable-{uuid.uuid4().hex}"
    marker.write_text("ok")

    # Defined here, so that it travels by value: a worker need not import this module.
    @ray.remote(num_cpus=0)
    def _sees(path: str) -> bool:
        return os.path.exists(path)

    try:
        refs = {
            n["NodeManagerAddress"] + ":" + n["NodeID"][:8]: _sees.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(str(marker))
            for n in nodes
        }
        blind = [node for node, ref in refs.items() if not ray.get(ref, timeout=120)]
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise JobError(
            refusal(
                "--storage-path",
                root,
                "cloud storage (s3://bucket/path, gs://bucket/path) or a shared file system "
                "mounted at the same path on every node",
                why=f"a local folder that node(s) {blind} cannot reach on a multi-node cluster",
            )
        )
