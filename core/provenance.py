"""What produced a result: the code's version, the libraries', and the machine it ran on.

A study's numbers are only comparable with another's when both were made by the same code on
the same stack; `provenance()` is what the study driver records in study.json under
`core.columns.PROVENANCE` when the study starts (tune_jobs.runner), and what the report shows
and the comparison checks (analysis). `device_name(device)` names the device each trial
computed on (core.train reports it every epoch).

* The code version is the git commit of the checkout the code runs from and whether that
  checkout had uncommitted changes (`git status --porcelain` not empty: a dirty tree's numbers
  cannot be reproduced from the commit alone). Outside a git checkout (an installed package)
  it is the installed `ensemble-efficiency` version instead.
* Library versions come from the installed distributions' metadata (importlib.metadata), so
  recording them imports none of the libraries; only the CUDA version needs torch, imported
  inside `cuda_version`.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

from core.columns import (
    PROV_COMMIT,
    PROV_CPU,
    PROV_DIRTY,
    PROV_PACKAGE_VERSION,
    PROV_VERSIONS,
)

__all__ = [
    "PACKAGE",
    "code_version",
    "cpu_model",
    "cuda_version",
    "device_name",
    "library_versions",
    "provenance",
]

PACKAGE = "ensemble-efficiency"  # the project's distribution (pyproject.toml's name)
# The checkout the code runs from: core/ sits at the top of the repository.
CODE_ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("torch", "ray", "optuna")  # distributions whose versions change the numbers
GIT_TIMEOUT_S = 10.0


def _git(root: Path, *args: str) -> str | None:
    """Output of `git -C root args`, None when git is missing or fails."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _package_version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def code_version(root: Path = CODE_ROOT) -> dict[str, Any]:
    """{commit, dirty, package_version} of the code at `root` (default: this code's folder).

    `root` counts as a checkout only when it is the top of a git work tree: a package installed
    into a virtual environment that happens to lie inside some repository is not that
    repository's code. Then commit and dirty are None and package_version says what is
    installed (None when it is not installed either).
    """
    top = _git(root, "rev-parse", "--show-toplevel")
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain")
    in_git = (
        top is not None
        and Path(top.strip()).resolve() == Path(root).resolve()
        and commit is not None
        and status is not None
    )
    if not in_git:
        return {PROV_COMMIT: None, PROV_DIRTY: None, PROV_PACKAGE_VERSION: _package_version()}
    return {
        PROV_COMMIT: commit.strip(),
        PROV_DIRTY: bool(status.strip()),
        PROV_PACKAGE_VERSION: _package_version(),
    }


def cuda_version() -> str | None:
    """The CUDA version torch was built with, when it sees a CUDA device; None on a CPU-only
    machine or torch build. torch is imported here only: the rest needs no import."""
    import torch

    return torch.version.cuda if torch.cuda.is_available() else None


def library_versions() -> dict[str, str | None]:
    """Python's version, the installed torch, Ray and Optuna (None: not installed), and CUDA's
    (`cuda_version`): the keys of core.columns.PROV_LIBRARIES, in that order."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["cuda"] = cuda_version()
    return out


def cpu_model() -> str:
    """This machine's CPU model: /proc/cpuinfo's first `model name` (Linux), else what
    platform.processor() says, else the machine type (`x86_64`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: Any) -> str:
    """The name of a torch device: `<GPU name> x<GPUs this process sees>` for CUDA (under Ray,
    the GPUs of the trial), the CPU model for the CPU."""
    if str(device).startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(device)} x{torch.cuda.device_count()}"
    return cpu_model()


def provenance(root: Path = CODE_ROOT) -> dict[str, Any]:
    """What produced a study, as study.json records it under core.columns.PROVENANCE: the code
    version (`code_version`), the library versions (`library_versions`) and the CPU model of
    the machine that runs it (the study's driver; each trial's device is in its rows)."""
    return {
        **code_version(root),
        PROV_VERSIONS: library_versions(),
        PROV_CPU: cpu_model(),
    }
