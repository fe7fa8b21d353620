"""What the machines offer a study: GPUs on this machine, CPUs and GPUs on the cluster, and
storage that every node can reach. Used by `tune_jobs.runner`; `check_local` runs before Ray
starts, the others need it started. (The checks that need no Ray, a reachable `--address`,
this machine's CPUs and the CPU and GPU bounds these checks share, are `tune_jobs.preflight`'s.)"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import ray
import torch
import yaml
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from core.errors import refusal
from tune_jobs.errors import JobError
from tune_jobs.preflight import ADDRESS_ALLOWED, NODE_TYPE, check_cpus, check_gpus
from tune_jobs.study import Study, grid_configs

# Written on the head by `ray up`: the launcher's config, node types with their resources.
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")


def local_gpus() -> int:
    return torch.cuda.device_count()


def start_ray(address: str | None) -> str | None:
    """`ray.init`: a fresh local Ray without `--address` (never a cluster that happens to run
    here), else join it; a cluster Ray cannot find is a one-line refusal of `--address`.
    Returns the dashboard's address (host:port; None or empty when no dashboard runs)."""
    try:
        return ray.init(address=address or "local").dashboard_url
    except ConnectionError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise JobError(refusal("--address", address, ADDRESS_ALLOWED, why=first)) from None


def cluster_resources() -> dict[str, dict[str, float]]:
    """CPUs and GPUs per node: the live nodes, plus the node types the autoscaler may still
    launch, keyed `NODE_TYPE + name`, with their `max_workers` (a type whose config names no
    CPU count gets CPU=inf here: unknown, never refused).

    Right after `ray up` the GPU workers (min 0) do not exist yet; the launcher's config on
    the head (`~/ray_bootstrap_config.yaml`, resources filled in by `ray up`) says what can.
    """
    found = {
        n["NodeManagerAddress"] + ":" + n["NodeID"][:8]: {
            "CPU": float(n["Resources"].get("CPU", 0.0)),
            "GPU": float(n["Resources"].get("GPU", 0.0)),
        }
        for n in ray.nodes()
        if n["Alive"]
    }
    bootstrap = BOOTSTRAP_CONFIG.expanduser()
    if bootstrap.exists():
        types = (yaml.safe_load(bootstrap.read_text()) or {}).get("available_node_types", {})
        for name, spec in types.items():
            if spec.get("max_workers", 0) > 0 or spec.get("min_workers", 0) > 0:
                res = spec.get("resources") or {}
                found[NODE_TYPE + name] = {
                    "CPU": float(res.get("CPU", float("inf"))),
                    "GPU": float(res.get("GPU", 0)),
                    "max_workers": float(spec.get("max_workers", 0)),
                }
    return found


def uses_cuda(study: Study) -> bool:
    """Whether a trial config of the study asks for device 'cuda' (a search: its fixed part)."""
    return any(c.get("device") == "cuda" for c in grid_configs(study.space))


def refuse_cuda(why: str, allowed: str = "device=auto or device=cpu") -> JobError:
    return JobError(refusal("--set", "device=cuda", allowed, why=why))


def check_local(study: Study, gpus_per_trial: float | None) -> None:
    """Without --address, before Ray starts: the GPUs asked for are on this machine (its CPUs
    are checked with the options: `tune_jobs.preflight.check_cpus`)."""
    gpus = local_gpus()
    if gpus_per_trial:
        check_gpus(gpus_per_trial, gpus, "this machine")
    if uses_cuda(study):
        if gpus == 0:
            raise refuse_cuda(
                "torch sees no CUDA device on this machine",
                "device=auto or device=cpu, or --address of a cluster with GPU nodes",
            )
        if gpus_per_trial == 0:
            raise refuse_cuda(
                "--gpus-per-trial 0 gives a trial no GPU", "--gpus-per-trial > 0, or device=auto"
            )


def check_cluster(
    study: Study, cpus_per_trial: float, gpus_per_trial: float | None, nodes: Mapping[str, dict]
) -> float:
    """After `ray.init`, before the Tuner: some live node or launchable node type has the CPUs
    and GPUs one trial asks for (else its trials would wait for ever). Returns the GPUs per
    trial (default: 1 when any node has a GPU, else 0)."""
    most_gpus = max((r["GPU"] for r in nodes.values()), default=0.0)
    if gpus_per_trial is None:
        gpus_per_trial = 1.0 if most_gpus > 0 else 0.0
    check_cpus(cpus_per_trial, max((r["CPU"] for r in nodes.values()), default=0.0), "any node")
    check_gpus(gpus_per_trial, most_gpus, "any node")
    if uses_cuda(study) and gpus_per_trial == 0:
        raise refuse_cuda(
            "no live node or launchable node type has a GPU"
            if most_gpus == 0
            else "--gpus-per-trial 0 gives a trial no GPU",
            "device=auto or device=cpu" if most_gpus == 0 else "--gpus-per-trial > 0",
        )
    fits = [
        w for w, r in nodes.items() if r["CPU"] >= cpus_per_trial and r["GPU"] >= gpus_per_trial
    ]
    if not fits:
        shapes = ", ".join(f"{w}: {r['CPU']:g} CPU, {r['GPU']:g} GPU" for w, r in nodes.items())
        raise JobError(
            refusal(
                "--cpus-per-trial",
                cpus_per_trial,
                "CPUs and GPUs per trial that one node has",
                why=f"no node has {cpus_per_trial:g} CPU(s) and {gpus_per_trial:g} GPU(s) "
                f"together ({shapes})",
            )
        )
    return gpus_per_trial


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
