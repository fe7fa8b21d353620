"""Session-wide isolation from what earlier runs left behind, and the shared data fixtures.

The decoded-data cache goes to a fresh per-session folder (``ENSEMBLE_CACHE_DIR``), so a cache
written by a user's earlier run (in ``~/.cache/ensemble-efficiency/decoded``) is never read by
the tests, and the tests never write into the user's cache. It is set in ``os.environ`` so that
the subprocesses tests start (study scripts, CLIs, Ray workers) inherit it.

The real CIFAR-10 images (``../shared/data/cifar10`` next to the checkout) are `cifar10_dir`,
and loaded once per session as `cifar10`; a test that needs them is skipped where they are not.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.data import ENV_CACHE_DIR, DataBundle, load_dataset

CIFAR10 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"


@pytest.fixture(scope="session", autouse=True)
def session_cache_dir(tmp_path_factory) -> Iterator[Path]:
    """The session's decoded-data cache folder (``$ENSEMBLE_CACHE_DIR``), empty at the start."""
    path = tmp_path_factory.mktemp("decoded-cache")
    before = os.environ.get(ENV_CACHE_DIR)
    os.environ[ENV_CACHE_DIR] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(ENV_CACHE_DIR, None)
        else:
            os.environ[ENV_CACHE_DIR] = before


@pytest.fixture(scope="session")
def cifar10_dir() -> Path:
    """The real CIFAR-10 image folder (train/ and test/); the test is skipped without it."""
    if not (CIFAR10 / "train").is_dir():
        pytest.skip(f"real CIFAR-10 images not found at {CIFAR10}")
    return CIFAR10


@pytest.fixture(scope="session")
def cifar10(cifar10_dir: Path) -> DataBundle:
    """The real CIFAR-10 images, loaded once per session (tests must not modify it)."""
    return load_dataset("cifar10", str(cifar10_dir))


def pytest_collection_modifyitems(config, items) -> None:
    """`@pytest.mark.cuda` tests are skipped on a machine without CUDA (CI has none);
    `@pytest.mark.scale` tests (the scale benchmark's quick mode, minutes of a busy machine)
    run only when asked for by name: `python -m pytest -m scale`."""
    import torch

    skips = []
    if not torch.cuda.is_available():
        skips.append(("cuda", "no CUDA device (benchmarks/gpu.sh runs these on a GPU)"))
    if "scale" not in (config.getoption("markexpr") or ""):
        skips.append(("scale", "the scale benchmark's quick mode: python -m pytest -m scale"))
    for mark, reason in skips:
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if mark in item.keywords:
                item.add_marker(skip)
