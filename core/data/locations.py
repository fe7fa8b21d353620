"""Where data is looked for: data_dir, else $ENSEMBLE_DATA_DIR, else the user cache.

Also where the CIFAR files or image folders sit under that directory (`find_layout`), and the
one hint every "not found" message ends with, telling the user how to point at a local copy.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "APP_NAME",
    "ENV_DATA_DIR",
    "LOCAL_COPY_HINT",
    "default_data_dir",
    "find_layout",
    "resolve_data_dir",
    "user_cache_dir",
]

ENV_DATA_DIR = "ENSEMBLE_DATA_DIR"
APP_NAME = "ensemble-efficiency"

LOCAL_COPY_HINT = (
    "Point at a local copy with data_dir=... (TrialConfig.data_dir / --data-dir) or the "
    f"{ENV_DATA_DIR} environment variable"
)


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ensemble-efficiency``, else ``~/.cache/ensemble-efficiency``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / APP_NAME


def default_data_dir() -> Path:
    return user_cache_dir() / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> tuple[Path, str]:
    """(directory, how it was chosen: 'data_dir' | ENV_DATA_DIR | 'default')."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser(), "data_dir"
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser(), ENV_DATA_DIR
    return default_data_dir(), "default"


def find_layout(name: str, root: Path) -> tuple[tuple[str, Path] | None, list[str]]:
    """Where cifar10 / cifar20 data sits under root: (('pickle' | 'folder', path) or None,
    descriptions of the places tried).

    root itself and its ``cifar10`` (or ``cifar20`` / ``cifar100``) sub-folder are searched,
    each for the torchvision python files, then for train/<class>/ + test/<class>/.
    """
    subdirs = ("cifar10",) if name == "cifar10" else ("cifar20", "cifar100")
    bases = [root] + [root / s for s in subdirs]
    tried: list[str] = []
    for base in bases:
        if name == "cifar10":
            pickles = [base / "cifar-10-batches-py", base]
            marker = "data_batch_1"
        else:
            pickles = [base / "cifar-100-python", base]
            marker = "meta"
        for p in pickles:
            tried.append(str(p / marker))
            if (p / marker).is_file() and (name == "cifar10" or (p / "train").is_file()):
                return ("pickle", p), tried
        tried.append(f"{base / 'train'}/<class>/ + {base / 'test'}/<class>/")
        if (base / "train").is_dir() and (base / "test").is_dir():
            return ("folder", base), tried
    return None, tried
