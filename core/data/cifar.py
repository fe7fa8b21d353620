"""CIFAR-10 and CIFAR-100 (as cifar20) from the torchvision python-pickle files, and their
download.

The pickles are arrays already: they are read directly, without the decoded-array cache.
cifar20 takes the ``coarse_labels`` of the files, else maps ``fine_labels`` with the table.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from core.data.bundle import DataBundle
from core.data.errors import DataFormatError, DataNotFoundError
from core.data.labels import CIFAR10_CLASSES, CIFAR20_CLASSES, CIFAR100_FINE_TO_COARSE
from core.data.locations import LOCAL_COPY_HINT

__all__ = ["download_cifar", "load_cifar_pickle"]


def download_cifar(name: str, root: Path) -> None:
    """Download the python files of cifar10 (CIFAR-10) or cifar20 (CIFAR-100) into root."""
    # Imported here, on purpose: importing torchvision costs ~2 s, which every Ray trial
    # worker would pay on `import core.data` although only a missing dataset downloads.
    from torchvision import datasets

    root.mkdir(parents=True, exist_ok=True)
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    for train in (True, False):
        cls(str(root), train=train, download=True)


def load_cifar_pickle(name: str, path: Path) -> DataBundle:
    """cifar10 from ``cifar-10-batches-py`` or cifar20 from ``cifar-100-python`` at path."""
    if name == "cifar10":
        xs, ys = [], []
        for i in range(1, 6):
            f = path / f"data_batch_{i}"
            d = _unpickle(f)
            xs.append(_pickle_images(d, f))
            ys.append(torch.as_tensor(d["labels"], dtype=torch.int64))
        test = _unpickle(path / "test_batch")
        test_x = _pickle_images(test, path / "test_batch")
        test_y = torch.as_tensor(test["labels"], dtype=torch.int64)
        meta_file = path / "batches.meta"
        classes = list(CIFAR10_CLASSES)
        if meta_file.is_file():
            classes = list(_unpickle(meta_file).get("label_names", classes))
        return DataBundle(
            torch.cat(xs), torch.cat(ys), test_x, test_y, num_classes=10, classes=classes,
            name=name, source=str(path),
        )  # fmt: skip
    # cifar20: CIFAR-100 with coarse labels
    splits = {}
    for split in ("train", "test"):
        f = path / split
        d = _unpickle(f)
        x = _pickle_images(d, f)
        if "coarse_labels" in d:
            y = torch.as_tensor(d["coarse_labels"], dtype=torch.int64)
        elif "fine_labels" in d:
            y = torch.as_tensor(CIFAR100_FINE_TO_COARSE)[
                torch.as_tensor(d["fine_labels"], dtype=torch.int64)
            ]
        else:
            raise DataFormatError(
                f"CIFAR-100 file {str(f)!r} has neither 'coarse_labels' nor 'fine_labels'"
            )
        splits[split] = (x, y)
    return DataBundle(
        *splits["train"], *splits["test"], num_classes=20, classes=list(CIFAR20_CLASSES),
        name=name, source=str(path),
    )  # fmt: skip


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except FileNotFoundError as e:
        raise DataNotFoundError(f"CIFAR file {str(path)!r} is missing. {LOCAL_COPY_HINT}.") from e
    except Exception as e:
        raise DataFormatError(
            f"cannot read CIFAR file {str(path)!r}: {type(e).__name__}: {e}"
        ) from e


def _pickle_images(d: dict, path: Path) -> torch.Tensor:
    try:
        data = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    except (KeyError, ValueError) as e:
        raise DataFormatError(
            f"CIFAR file {str(path)!r} has no 'data' array of 3x32x32 images ({e})"
        ) from e
    return torch.from_numpy(np.ascontiguousarray(data))
