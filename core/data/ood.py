"""The out-of-distribution image sets of the robustness evaluation, as uint8 (N, C, H, W).

* ``fashion_mnist``: the 10,000 Fashion-MNIST test images (``t10k-images-idx3-ubyte.gz``, the
  idx format, gzipped), resized from 28 x 28 to the in-distribution size with bilinear
  interpolation (torch, align_corners=False, rounded) and replicated to its channels. Looked
  for in ``ood_dir``, else ``$ENSEMBLE_FASHION_MNIST_DIR``, else where Debian's
  ``dataset-fashion-mnist`` package installs it (`FASHION_MNIST_DIR`).
* ``imagefolder``: every image file under ``ood_dir`` (any depth, e.g. SVHN's test images),
  decoded like the image-folder datasets (one size per folder) and resized to the
  in-distribution size when it differs.

Data that is not there is a `DataNotFoundError` whose one line says where it looked and how to
get it; the training loop turns that into a notice, and the OOD metrics are then NaN.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.data.decode import decode_files
from core.data.errors import DataFormatError, DataNotFoundError
from core.data.imagefolder import IMG_EXTENSIONS
from core.data.locations import ENV_FASHION_MNIST_DIR, FASHION_MNIST_DIR

__all__ = ["FASHION_MNIST_TEST", "fashion_mnist_dir", "load_ood", "read_idx_images"]

FASHION_MNIST_TEST = "t10k-images-idx3-ubyte.gz"
OOD_DATASETS = ("fashion_mnist", "imagefolder")


def fashion_mnist_dir(ood_dir: str | None = None) -> tuple[Path, str]:
    """(folder, how it was chosen: 'ood_dir' | ENV_FASHION_MNIST_DIR | 'default')."""
    if ood_dir:
        return Path(ood_dir).expanduser(), "ood_dir"
    env = os.environ.get(ENV_FASHION_MNIST_DIR)
    if env:
        return Path(env).expanduser(), ENV_FASHION_MNIST_DIR
    return FASHION_MNIST_DIR, "default"


def read_idx_images(path: Path) -> torch.Tensor:
    """A gzipped idx3 file (magic 2051, big-endian counts) as uint8 (N, rows, cols)."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataFormatError(f"cannot read the idx file {str(path)!r}: {e}") from e
    header = np.frombuffer(raw[:16], dtype=">i4") if len(raw) >= 16 else None
    if header is None or header[0] != 2051:
        raise DataFormatError(
            f"{str(path)!r} is not an idx3 image file (expected magic number 2051 in its first "
            "4 bytes)"
        )
    n, rows, cols = (int(v) for v in header[1:])
    if len(raw) != 16 + n * rows * cols:
        raise DataFormatError(
            f"{str(path)!r}: {len(raw) - 16:,} bytes of pixels, its header says "
            f"{n:,} x {rows} x {cols}"
        )
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=16).copy()).view(
        n, rows, cols
    )


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, C, h, w) -> uint8 (N, C, H, W), bilinear, rounded (unchanged at equal size)."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    y = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8)


def _channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1).contiguous()
    if channels == 1:
        return x.float().mean(1, keepdim=True).round().to(torch.uint8)
    raise DataFormatError(f"cannot turn {x.shape[1]}-channel OOD images into {channels} channels")


def _fashion_mnist(ood_dir: str | None) -> torch.Tensor:
    root, how = fashion_mnist_dir(ood_dir)
    path = root / FASHION_MNIST_TEST
    if not path.is_file():
        chosen = {"ood_dir": " (ood_dir)", "default": ""}.get(how, f" (from {how})")
        raise DataNotFoundError(
            f"Fashion-MNIST (the OOD set) not found: no {str(path)!r}{chosen}; install Debian's "
            f"package with `apt-get install dataset-fashion-mnist` (it puts the files in "
            f"{FASHION_MNIST_DIR}), or point at its idx .gz files with ood_dir=... or "
            f"{ENV_FASHION_MNIST_DIR}, or set ood_dataset='none'"
        )
    return read_idx_images(path).unsqueeze(1)


def _imagefolder(ood_dir: str | None) -> torch.Tensor:
    root = Path(ood_dir or "")
    if not ood_dir or not root.is_dir():
        raise DataNotFoundError(
            f"OOD image folder {str(root)!r} not found; ood_dataset='imagefolder' needs "
            "ood_dir=<a folder of image files, at any depth>"
        )
    paths = sorted(
        os.path.join(d, f)
        for d, _, files in os.walk(root)
        for f in files
        if f.lower().endswith(IMG_EXTENSIONS) and not f.startswith(".")
    )
    if not paths:
        raise DataNotFoundError(
            f"OOD image folder {str(root)!r} holds no image file (allowed: "
            f"{', '.join(IMG_EXTENSIONS)})"
        )
    return decode_files(paths, where=str(root))


def load_ood(name: str, ood_dir: str | None, size: tuple[int, int], channels: int) -> torch.Tensor:
    """OOD set `name` ('fashion_mnist' | 'imagefolder') as uint8 (N, channels, *size)."""
    if name == "fashion_mnist":
        x = _fashion_mnist(ood_dir)
    elif name == "imagefolder":
        x = _imagefolder(ood_dir)
    else:
        raise ValueError(f"unknown OOD dataset {name!r}; known: {list(OOD_DATASETS)}")
    return _channels(_resize(x, size), channels)
