"""The decoded-array cache of an image folder: one ``.pt`` file per dataset name and folder.

Decoding is slow; reading the decoded arrays back is not (well under a second for the
30,000 CIFAR-10 JPEGs). The file holds the four uint8 / int64 tensors, the class names and
the channel statistics, under a key made of the cache version, the dataset name, the
folder's absolute path and a fingerprint of its image files, so that changed images are
decoded again.

Where: next to the data (``<root>/.ensemble-cache-<name>.pt``) when that folder is writable,
else in ``<user cache>/decoded/``. A file that is unreadable or has another key is ignored
(and rebuilt); a failed write is a warning, not an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import torch

from core.data.bundle import DataBundle
from core.data.locations import user_cache_dir

__all__ = ["CACHE_VERSION", "cache_key", "cache_paths", "read_cached", "write_cached"]

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def cache_key(name: str, root: Path, fingerprint: str) -> str:
    """What a cache file must hold to be used for dataset `name` read from `root`."""
    return f"v{CACHE_VERSION}|{name}|{Path(root).resolve()}|{fingerprint}"


def cache_paths(root: Path, name: str) -> tuple[Path, Path]:
    """(next to the data, in the user cache) locations of the decoded-array cache file."""
    root = Path(root).resolve()
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:16]
    return (
        root / f".ensemble-cache-{name}.pt",
        user_cache_dir() / "decoded" / f"{name}-{root.name}-{digest}.pt",
    )


def read_cached(root: Path, name: str, key: str) -> DataBundle | None:
    """The bundle cached for (root, name) under `key`, next to the data or in the user cache;
    None when neither file exists or holds that key."""
    for path in cache_paths(root, name):
        obj = _read(path, key)
        if obj is not None:
            return DataBundle(
                obj["train_x"], obj["train_y"], obj["test_x"], obj["test_y"],
                num_classes=len(obj["classes"]), classes=list(obj["classes"]),
                mean=tuple(obj["mean"]), std=tuple(obj["std"]), name=name, source=str(root),
                cache_path=str(path),
            )  # fmt: skip
    return None


def write_cached(root: Path, name: str, key: str, bundle: DataBundle) -> Path | None:
    """Write `bundle` under `key`: next to the data if that folder is writable and the write
    succeeds, else in the user cache. The path written, or None if both failed."""
    payload = {
        "key": key,
        "train_x": bundle.train_x, "train_y": bundle.train_y,
        "test_x": bundle.test_x, "test_y": bundle.test_y,
        "classes": list(bundle.classes), "mean": list(bundle.mean), "std": list(bundle.std),
    }  # fmt: skip
    near, far = cache_paths(root, name)
    for path in [near, far] if _dir_writable(Path(root)) else [far]:
        if _write(path, payload):
            return path
    return None


def _dir_writable(d: Path) -> bool:
    """Whether to write a cache file into d.

    A real write attempt decides (it catches read-only mounts and missing permissions); in
    addition a directory whose permission bits grant nobody write access (e.g. dr-xr-xr-x)
    counts as read-only even for root, who could write there anyway: its owner marked it
    read-only (like ../shared in CI).
    """
    try:
        if not os.stat(d).st_mode & 0o222:
            return False
        with tempfile.TemporaryFile(dir=d):
            pass
        return True
    except OSError:
        return False


def _read(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated / foreign file is rebuilt, not fatal
        log.warning("ignoring unreadable data cache %s (%s)", path, e)
        return None
    if not isinstance(obj, dict) or obj.get("key") != key:
        return None
    return obj


def _write(path: Path, payload: dict) -> bool:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)  # atomic: concurrent loaders see the old or the new file
        return True
    except OSError as e:
        log.warning("could not write data cache %s (%s)", path, e)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return False
