"""The decoded-array cache of an image folder: one ``.pt`` file per dataset name and folder.

Decoding is slow; reading the decoded arrays back is not (well under a second for the
30,000 CIFAR-10 JPEGs). The file holds the four uint8 / int64 tensors, the class names and
the channel statistics, under a key made of the cache version, the dataset name, the
folder's resolved path and a fingerprint of its image files, so that changed images are
decoded again.

Where: in ``$ENSEMBLE_CACHE_DIR`` when set, else in ``<user cache>/decoded/``
(``$XDG_CACHE_HOME/ensemble-efficiency/decoded`` or ``~/.cache/ensemble-efficiency/decoded``),
never next to the data. The file is ``<name>-<hash of the folder's path>-<hash of the key>.pt``:
two folders never share a file, and a changed folder gets a new one (the file of its old
contents is removed when the new one is written, so the cache does not grow). Writing a cache
file prints one line to stderr saying where; a file that is unreadable or has another key is
ignored (and rebuilt); a failed write is a one-line warning, and the data is used uncached.
Files of older versions (``<data>/.ensemble-cache-<name>.pt``) are neither read nor removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import tempfile
from pathlib import Path

import torch

from core.data.bundle import DataBundle
from core.data.locations import ENV_CACHE_DIR, decoded_cache_dir

__all__ = ["CACHE_VERSION", "cache_file", "cache_key", "read_cached", "write_cached"]

CACHE_VERSION = 1


def cache_key(name: str, root: Path, fingerprint: str) -> str:
    """What a cache file must hold to be used for dataset `name` read from `root`."""
    return f"v{CACHE_VERSION}|{name}|{Path(root).resolve()}|{fingerprint}"


def cache_file(name: str, root: Path, key: str) -> Path:
    """The cache file of dataset `name` read from `root` with contents `key` (`cache_key`)."""
    folder, _ = decoded_cache_dir()
    return folder / f"{_prefix(name, root)}{_digest(key)}.pt"


def read_cached(root: Path, name: str, key: str) -> DataBundle | None:
    """The bundle cached for (root, name) under `key`; None when there is no usable file."""
    path = cache_file(name, root, key)
    obj = _read(path, key)
    if obj is None:
        return None
    try:
        return DataBundle(
            obj["train_x"], obj["train_y"], obj["test_x"], obj["test_y"],
            num_classes=len(obj["classes"]), classes=list(obj["classes"]),
            mean=tuple(obj["mean"]), std=tuple(obj["std"]), name=name, source=str(root),
            cache_path=str(path),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as e:
        _say(f"warning: ignoring the malformed data cache file {str(path)!r} ({e})")
        return None


def write_cached(root: Path, name: str, key: str, bundle: DataBundle) -> Path | None:
    """Write `bundle` under `key`, remove the files of the folder's older contents, and say
    where (one line on stderr). The path written, or None if the write failed (a warning)."""
    payload = {
        "key": key,
        "train_x": bundle.train_x, "train_y": bundle.train_y,
        "test_x": bundle.test_x, "test_y": bundle.test_y,
        "classes": list(bundle.classes), "mean": list(bundle.mean), "std": list(bundle.std),
    }  # fmt: skip
    path = cache_file(name, root, key)
    _, how = decoded_cache_dir()
    error = _write(path, payload)
    if error is not None:
        chosen = f" (from {ENV_CACHE_DIR})" if how == ENV_CACHE_DIR else ""
        _say(
            f"warning: cannot write the decoded-data cache {str(path)!r}{chosen}: {error}; "
            f"continuing without a cache, the next load decodes again (set {ENV_CACHE_DIR} to a "
            "writable folder)"
        )
        return None
    stale = 0
    resolved = Path(root).resolve()
    previous = [*path.parent.glob(f"{_prefix(name, root)}*.pt")]
    # the name this folder's cache had before the contents hash was part of it
    previous.append(path.parent / f"{name}-{resolved.name}-{_digest(str(resolved))}.pt")
    for old in previous:
        if old != path and old.is_file():
            with contextlib.suppress(OSError):
                old.unlink()
                stale += 1
    n = bundle.num_train + bundle.num_test
    removed = f"; removed {stale} cache file(s) of its older contents" if stale else ""
    _say(
        f"decoded {n:,} images of {resolved} once; cache: {path} "
        f"(set {ENV_CACHE_DIR} to move it{removed})"
    )
    return path


def _prefix(name: str, root: Path) -> str:
    """File-name prefix shared by every cache file of (name, root)."""
    return f"{name}-{_digest(str(Path(root).resolve()))}-"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _say(line: str) -> None:
    """One line on stderr: the user running a study or `core.train` sees it (nothing here
    configures logging, and data is loaded on the driver, not in Ray workers)."""
    print(re.sub(r"\s*[\r\n]+\s*", " ", line), file=sys.stderr, flush=True)


def _read(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated / foreign file is rebuilt, not fatal
        _say(f"warning: ignoring the unreadable data cache file {str(path)!r} ({e})")
        return None
    if not isinstance(obj, dict) or obj.get("key") != key:
        return None
    return obj


def _write(path: Path, payload: dict) -> str | None:
    """Write payload to path atomically; None, or what went wrong."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)  # atomic: concurrent loaders see the old or the new file
        return None
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as RuntimeError
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return f"{type(e).__name__}: {e}"
