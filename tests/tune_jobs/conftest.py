"""Fixtures for running the study scripts for real: local Ray, the real CIFAR-10 images
(`cifar10_dir`, tests/conftest.py)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The suite's own smoke sizes: the smoke preset learns (4,000 images, 4 epochs, ~2 min; its
# accuracy floor is benchmarks/smoke_floor.py's), the tests check the pipeline at a smaller size.
CI_SIZES = ("--set", "train_subset=500", "--set", "test_subset=250", "--epochs", "2")


def run_job(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python tune_jobs/<script> args...` from the repo root, as a researcher would."""
    return subprocess.run(
        [sys.executable, f"tune_jobs/{script}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def alpha_gamma_smoke_run(
    tmp_path_factory, cifar10_dir
) -> tuple[Path, subprocess.CompletedProcess]:
    """One real alpha/gamma smoke study: its folder and the finished process (its output)."""
    storage = tmp_path_factory.mktemp("ray_results")
    r = run_job(
        "alpha_gamma.py",
        "--smoke",
        *CI_SIZES,
        "--data-dir",
        str(cifar10_dir),
        "--storage-path",
        str(storage),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return storage / "alpha_gamma_smoke", r


@pytest.fixture(scope="session")
def alpha_gamma_smoke(alpha_gamma_smoke_run) -> Path:
    """The real alpha/gamma smoke study's folder, shared by the tests that read its output."""
    return alpha_gamma_smoke_run[0]


@pytest.fixture
def alpha_gamma_smoke_copy(alpha_gamma_smoke, tmp_path) -> Path:
    """A copy of the real alpha/gamma smoke study in `tmp_path` (its storage path there), for a
    test that extends or changes a finished study without running one of its own."""
    return Path(shutil.copytree(alpha_gamma_smoke, tmp_path / alpha_gamma_smoke.name))
