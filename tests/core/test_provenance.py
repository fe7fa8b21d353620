"""What produced a result: the code version from a real git checkout, the installed versions
outside one, the libraries and the CPU."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from core import columns as C
from core.provenance import (
    CODE_ROOT,
    PACKAGE,
    code_version,
    cpu_model,
    cuda_version,
    device_name,
    library_versions,
    provenance,
)

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.email", "test@example.com")
    git(root, "config", "user.name", "test")
    (root / "train.py").write_text("print('v1')\n")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "v1")
    return root


@needs_git
def test_a_clean_checkout_gives_its_commit_and_then_a_dirty_tree(repo: Path):
    version = code_version(repo)
    assert version[C.PROV_COMMIT] == git(repo, "rev-parse", "HEAD")
    assert len(version[C.PROV_COMMIT]) == 40 and version[C.PROV_DIRTY] is False
    (repo / "train.py").write_text("print('v2')\n")  # an uncommitted change
    assert code_version(repo)[C.PROV_DIRTY] is True
    git(repo, "commit", "-q", "-am", "v2")
    after = code_version(repo)
    assert after[C.PROV_DIRTY] is False and after[C.PROV_COMMIT] != version[C.PROV_COMMIT]
    (repo / "notes.txt").write_text("new\n")  # an untracked file: git status lists it
    assert code_version(repo)[C.PROV_DIRTY] is True


@needs_git
def test_a_folder_inside_a_checkout_is_not_that_checkout(repo: Path):
    # e.g. a package installed into a virtual environment that lies inside some repository
    inner = repo / "venv" / "site-packages"
    inner.mkdir(parents=True)
    version = code_version(inner)
    assert version[C.PROV_COMMIT] is None and version[C.PROV_DIRTY] is None


def test_outside_git_the_installed_package_version(tmp_path: Path):
    version = code_version(tmp_path)
    assert version[C.PROV_COMMIT] is None and version[C.PROV_DIRTY] is None
    try:
        installed = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    assert version[C.PROV_PACKAGE_VERSION] == installed


@needs_git
def test_this_code_is_recorded_from_its_own_checkout():
    if (CODE_ROOT / ".git").exists():
        assert code_version()[C.PROV_COMMIT] == git(CODE_ROOT, "rev-parse", "HEAD")


def test_library_versions_are_the_installed_ones():
    import torch

    versions = library_versions()
    assert tuple(versions) == C.PROV_LIBRARIES
    assert versions["python"] == platform.python_version()
    for name in ("torch", "ray", "optuna"):
        assert versions[name] == importlib.metadata.version(name)
    expected_cuda = torch.version.cuda if torch.cuda.is_available() else None
    assert versions["cuda"] == cuda_version() == expected_cuda


def test_the_cpu_model_and_device_names():
    model = cpu_model()
    assert model and model == device_name("cpu")
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.partition(":")[2].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.partition(":")[0].strip() == "model name"
        ]
        if names:
            assert model == names[0]


@pytest.mark.cuda
def test_a_cuda_device_is_named_by_its_gpu_and_count():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    name = device_name("cuda")
    assert name == f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"


def test_provenance_is_plain_json_with_every_key(tmp_path: Path):
    record = provenance(tmp_path)
    assert set(record) == {
        C.PROV_COMMIT,
        C.PROV_DIRTY,
        C.PROV_PACKAGE_VERSION,
        C.PROV_VERSIONS,
        C.PROV_CPU,
    }
    assert json.loads(json.dumps(record)) == record
    assert record[C.PROV_CPU] == cpu_model()
