"""The checks of a study's options against the machine and the cluster that need no Ray (nor
torch), run before Ray starts so that a bad option is refused in a moment: a writable
`--storage-path`, a reachable `--address`, a usable `--mlflow-uri`, CPUs and GPUs per trial
within what a machine has. `tune_jobs.resources` runs the CPU and GPU bounds again on what Ray
sees once it has started (with the checks that need Ray or torch)."""

from __future__ import annotations

import importlib.util
import math
import os
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path

from core.errors import refusal
from tune_jobs.errors import JobError

STORAGE_ALLOWED = "a writable folder, s3://bucket/path or gs://bucket/path"
ADDRESS_ALLOWED = (
    "'auto' with a running cluster, host:port of a head node (ray://host:port for Ray Client), "
    "or no --address for a local Ray"
)
CONNECT_TIMEOUT_S = 3.0  # a head node answers in milliseconds
# The key prefix of a node type the autoscaler may still launch, beside the live nodes in
# tune_jobs.resources.cluster_resources (the estimate and the search's concurrency read it)
NODE_TYPE = "node type "


def trials_per_node(node: Mapping[str, float], cpus: float, gpus: float) -> int | None:
    """Trials of (cpus, gpus) one node of `node`'s CPUs and GPUs holds; None where nothing
    bounds it (no CPUs asked, or a node type whose config names no CPUs, and no GPUs asked)."""
    bounds = []
    if gpus > 0:
        bounds.append(math.floor(node["GPU"] / gpus))
    if cpus > 0 and math.isfinite(node["CPU"]):
        bounds.append(math.floor(node["CPU"] / cpus))
    return min(bounds) if bounds else None


# MLflow tracking stores the job can log to (Ray's MLflowLoggerCallback on the driver): a local
# file store (MLflow >= 3.7 keeps it in maintenance mode; the runner opts in to it), SQLite, a
# tracking server, Databricks.
MLFLOW_SCHEMES = ("file", "sqlite", "http", "https", "databricks")
MLFLOW_ALLOWED = (
    "file:///absolute/folder, sqlite:///path/mlflow.db, http(s)://host:port of a tracking "
    "server, or databricks"
)
MLFLOW_INSTALL = 'pip install -e ".[mlflow]"'


def is_uri(path: str) -> bool:
    """Whether a storage path or data folder is a URI (s3://, gs://) rather than a local path."""
    return "://" in path


def local_cpus() -> int:
    """The CPUs this process may use (its affinity mask; what a local Ray counts, short of a
    cgroup quota, which the runner's check after `ray.init` catches)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_cpus(per_trial: float, most: float, where: str) -> None:
    """Refuse `--cpus-per-trial` above the CPUs that `where` has at most."""
    if per_trial > most:
        raise JobError(
            refusal(
                "--cpus-per-trial",
                per_trial,
                f"a value <= {most:g}",
                why=f"{where} has at most {most:g} CPU(s); a trial asking for more waits for ever",
            )
        )


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


def check_address(address: str | None) -> None:
    """Refuse an explicit `--address` (host:port or ray://host:port) that nothing answers at,
    within seconds, before Ray starts and spends a minute retrying. `auto` is Ray's to find
    (`tune_jobs.resources.start_ray` words its failure)."""
    if address is None or address == "auto":
        return
    client = address.startswith("ray://")
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep:
        host, port = hostport, "10001" if client else "6379"  # Ray's defaults
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise JobError(refusal("--address", address, ADDRESS_ALLOWED, why="not host:port"))
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except TimeoutError:
        why = f"no answer from {host}:{port} within {CONNECT_TIMEOUT_S:g} s"
        raise JobError(refusal("--address", address, ADDRESS_ALLOWED, why=why)) from None
    except OSError as e:
        why = f"cannot connect to {host}:{port} ({e.strerror or e})"
        raise JobError(refusal("--address", address, ADDRESS_ALLOWED, why=why)) from None


def check_storage_path(
    path: str, option: str = "--storage-path", allowed: str = STORAGE_ALLOWED
) -> None:
    """A local `--storage-path` must be a folder this process can create folders in, or a
    path whose nearest existing parent is one (Ray creates the rest).

    Tried for real (a temporary folder, removed at once), not read from permission bits: root
    passes every permission check but not a read-only file system.
    """
    root = Path(path).expanduser().absolute()
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        where = "is" if probe == root else "is under"
        found = f"{where} {str(probe)!r}, a file, not a folder"
        raise JobError(refusal(option, path, allowed, why=found))
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".storage-check-", dir=probe))
    except OSError as e:
        where = "" if probe == root else f" ({str(probe)!r}, the nearest existing folder)"
        found = f"cannot create a folder there{where}: {e.strerror}"
        raise JobError(refusal(option, path, allowed, why=found)) from None


def check_mlflow_uri(uri: str) -> None:
    """`--mlflow-uri`: a tracking URI of a scheme MLflow serves (a local store's folder must
    be creatable), and the mlflow package installed; checked before Ray starts, without
    importing mlflow (a second's import)."""
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme not in MLFLOW_SCHEMES:
        why = f"not a URI of {list(MLFLOW_SCHEMES)}"
        raise JobError(refusal("--mlflow-uri", uri, MLFLOW_ALLOWED, why=why))
    if scheme in ("file", "sqlite"):
        path = rest.removeprefix("//")
        if not path.startswith("/"):
            why = f"{scheme}: needs an absolute path ({scheme}:///folder)"
            raise JobError(refusal("--mlflow-uri", uri, MLFLOW_ALLOWED, why=why))
        folder = path if scheme == "file" else str(Path(path).parent)
        check_storage_path(folder, "--mlflow-uri", MLFLOW_ALLOWED)
    if scheme in ("http", "https") and not rest.removeprefix("//").strip("/"):
        why = "no host"
        raise JobError(refusal("--mlflow-uri", uri, MLFLOW_ALLOWED, why=why))
    if importlib.util.find_spec("mlflow") is None:
        why = "the mlflow package is not installed"
        raise JobError(refusal("--mlflow-uri", uri, f"{uri} after {MLFLOW_INSTALL}", why=why))
