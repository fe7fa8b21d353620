"""`load_dataset`: from a dataset name and data_dir to the full train and test sets.

It decides where to look (`locations`), which layout is there (CIFAR pickles or an image
folder), downloads CIFAR when nothing is found, and hands over to the matching reader. Every
"not found" names the places tried and how to point at a local copy.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.config import DATASETS
from core.data.bundle import DataBundle
from core.data.cifar import download_cifar, load_cifar_pickle
from core.data.errors import DataFormatError, DataNotFoundError
from core.data.imagefolder import load_imagefolder
from core.data.locations import (
    CIFAR100_NEEDED,
    ENV_DATA_DIR,
    LOCAL_COPY_HINT,
    default_data_dir,
    find_layout,
    other_cifar,
    resolve_data_dir,
)
from core.errors import ConfigError, refusal

__all__ = ["load_dataset"]


def load_dataset(
    name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> DataBundle:
    """Load the full train and test sets of `name` as uint8 tensors (see the package doc)."""
    if name not in DATASETS:
        raise ConfigError(refusal("dataset", name, DATASETS))
    root, how = resolve_data_dir(data_dir)
    if name == "imagefolder" and how == "default":
        raise ConfigError(
            refusal(
                "data_dir",
                data_dir,
                "a root holding train/<class>/ and test/<class>/",
                why=f"dataset 'imagefolder' needs data_dir (or {ENV_DATA_DIR}) set",
            )
        )
    if how != "default" and not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a directory"
        raise DataNotFoundError(
            f"data directory {str(root)!r} (from {how}) {what}. {LOCAL_COPY_HINT}; the "
            f"default, without either, is {str(default_data_dir())!r} (CIFAR is downloaded "
            "there)."
        )
    if name == "imagefolder":
        return load_imagefolder(root, name)

    layout, tried = find_layout(name, root)
    if layout is None and how != "default":
        _refuse_other_cifar(name, root)
    if layout is None and download:
        try:
            download_cifar(name, root)
        except Exception as e:  # network errors come in many types
            raise DataNotFoundError(
                f"{name} data not found; looked in: {', '.join(tried)}. Downloading it into "
                f"{str(root)!r} failed ({type(e).__name__}: {e}). {LOCAL_COPY_HINT}, e.g. a "
                "folder holding the torchvision python files (cifar-10-batches-py / "
                "cifar-100-python) or train/<class>/ and test/<class>/ images."
            ) from e
        layout, tried2 = find_layout(name, root)
        tried += [t for t in tried2 if t not in tried]
    if layout is None:
        raise DataNotFoundError(
            f"{name} data not found; looked in: {', '.join(tried)}"
            f"{'' if download else ' (download=False)'}. {LOCAL_COPY_HINT}, e.g. a folder "
            "holding the torchvision python files (cifar-10-batches-py / cifar-100-python) or "
            "train/<class>/ and test/<class>/ images."
        )
    kind, path = layout
    if kind == "pickle":
        return load_cifar_pickle(name, path)
    return load_imagefolder(path, name)


def _refuse_other_cifar(name: str, root: Path) -> None:
    """CIFAR-10 files given for cifar20 (or CIFAR-100 files for cifar10) are refused, not
    downloaded next to: the user most likely picked the wrong --dataset or --data-dir."""
    path = other_cifar(name, root)
    if path is None:
        return
    if name == "cifar20":
        raise DataFormatError(
            refusal(
                "dataset",
                name,
                CIFAR100_NEEDED,
                why=f"{str(path)!r} holds CIFAR-10 files (cifar-10-batches-py); use dataset "
                "'cifar10' for them",
            )
        )
    raise DataFormatError(
        refusal(
            "dataset",
            name,
            "a data_dir holding CIFAR-10: its python files (cifar-10-batches-py) or "
            "train/<class>/ and test/<class>/ folders of its 10 classes",
            why=f"{str(path)!r} holds CIFAR-100 files (cifar-100-python); use dataset "
            "'cifar20' for them",
        )
    )
