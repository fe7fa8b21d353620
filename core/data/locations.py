"""Where data is looked for: data_dir, else $ENSEMBLE_DATA_DIR, else the user cache.

Also where the CIFAR files or image folders sit under that directory (`find_layout`), the
one hint every "not found" message ends with, telling the user how to point at a local copy,
and where decoded image folders are cached (`decoded_cache_dir`): $ENSEMBLE_CACHE_DIR, else
``<user cache>/decoded``, never next to the data.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "APP_NAME",
    "CIFAR100_NEEDED",
    "ENV_CACHE_DIR",
    "ENV_DATA_DIR",
    "ENV_FASHION_MNIST_DIR",
    "FASHION_MNIST_DIR",
    "LOCAL_COPY_HINT",
    "decoded_cache_dir",
    "default_data_dir",
    "find_layout",
    "other_cifar",
    "resolve_data_dir",
    "user_cache_dir",
]

ENV_DATA_DIR = "ENSEMBLE_DATA_DIR"
ENV_CACHE_DIR = "ENSEMBLE_CACHE_DIR"
# The far-OOD set: Fashion-MNIST where Debian's `dataset-fashion-mnist` package installs it
# (``apt-get install dataset-fashion-mnist``), or the folder $ENSEMBLE_FASHION_MNIST_DIR names;
# TrialConfig.ood_dir overrides both.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_FASHION_MNIST_DIR = "ENSEMBLE_FASHION_MNIST_DIR"
APP_NAME = "ensemble-efficiency"

LOCAL_COPY_HINT = (
    "Point at a local copy with data_dir=... (TrialConfig.data_dir / --data-dir) or the "
    f"{ENV_DATA_DIR} environment variable"
)

# What dataset cifar20 needs, in the refusal of CIFAR-10 files given for it.
CIFAR100_NEEDED = (
    "a data_dir holding CIFAR-100: its python files (cifar-100-python) or train/<class>/ and "
    "test/<class>/ folders named by the 20 coarse or the 100 fine CIFAR-100 classes"
)


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ensemble-efficiency``, else ``~/.cache/ensemble-efficiency``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / APP_NAME


def default_data_dir() -> Path:
    return user_cache_dir() / "data"


def decoded_cache_dir() -> tuple[Path, str]:
    """(folder of the decoded-array cache files, how it was chosen: ENV_CACHE_DIR | 'default').

    ``$ENSEMBLE_CACHE_DIR`` when set and not empty, else ``<user cache>/decoded``.
    """
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser().absolute(), ENV_CACHE_DIR
    return (user_cache_dir() / "decoded").absolute(), "default"


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


def other_cifar(name: str, root: Path) -> Path | None:
    """The python files of the *other* CIFAR right at root (not in a sub-folder), or None:
    for cifar20 CIFAR-10's ``cifar-10-batches-py``, for cifar10 CIFAR-100's
    ``cifar-100-python``. Used to refuse them instead of downloading the right ones there."""
    if name == "cifar20":
        places, marker = [root / "cifar-10-batches-py", root], "data_batch_1"
    else:
        places, marker = [root / "cifar-100-python", root], "meta"
    for p in places:
        if (p / marker).is_file() and (name == "cifar20" or (p / "train").is_file()):
            return p
    return None
