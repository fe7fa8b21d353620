"""Image-folder datasets: ``train/<class>/<images>`` and ``test/<class>/<images>`` under a root.

Scanning lists the classes (sorted folder names, the same in train/ and test/), every image
file and a fingerprint of them; the class folders are mapped to the dataset's labels (for
cifar20 the 20 coarse or the 100 fine CIFAR-100 names); the images are decoded once and
served from the decoded-array cache afterwards.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from core.data.bundle import DataBundle
from core.data.cache import cache_key, read_cached, write_cached
from core.data.decode import decode_files
from core.data.errors import DataFormatError, DataNotFoundError
from core.data.labels import CIFAR20_CLASSES, CIFAR100_CLASSES, CIFAR100_FINE_TO_COARSE
from core.data.locations import LOCAL_COPY_HINT

__all__ = ["IMG_EXTENSIONS", "load_imagefolder", "scan_imagefolder"]

IMG_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp",
)  # fmt: skip


def load_imagefolder(root: Path, name: str) -> DataBundle:
    """Dataset `name` from the image folder at root: from the cache when the files are
    unchanged, else decoded (and cached)."""
    root = Path(root)
    folder_classes, entries, fingerprint = scan_imagefolder(root)
    classes, label_map = _folder_labels(name, root, folder_classes)
    key = cache_key(name, root, fingerprint)
    cached = read_cached(root, name, key)
    if cached is not None:
        return cached

    lut = torch.as_tensor(label_map, dtype=torch.int64)
    arrays = {}
    for split in ("train", "test"):
        rows = entries[split]
        x = decode_files([r[0] for r in rows])
        y = lut[torch.as_tensor([r[1] for r in rows], dtype=torch.int64)]
        arrays[split] = (x, y)
    if arrays["train"][0].shape[1:] != arrays["test"][0].shape[1:]:
        raise DataFormatError(
            f"image folder {str(root)!r}: train images are {tuple(arrays['train'][0].shape[1:])}"
            f" but test images {tuple(arrays['test'][0].shape[1:])} (C, H, W); they must match"
        )
    bundle = DataBundle(
        *arrays["train"], *arrays["test"], num_classes=len(classes), classes=classes,
        name=name, source=str(root),
    )  # fmt: skip
    written = write_cached(root, name, key, bundle)
    if written is not None:
        bundle.cache_path = str(written)
    return bundle


def scan_imagefolder(root: Path) -> tuple[list[str], dict[str, list], str]:
    """Class names, per split the (path, folder index) of every image, and a fingerprint
    (sha1) of all relative paths, sizes and mtimes."""
    root = Path(root)
    train_classes = _list_classes(root / "train")
    test_classes = _list_classes(root / "test")
    if not train_classes:
        raise DataFormatError(
            f"image folder {str(root / 'train')!r} has no class sub-folders; expected "
            "train/<class>/<image files> (e.g. train/cat/0001.png)"
        )
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise DataFormatError(
            f"image folder {str(root)!r}: train/ and test/ have different classes "
            f"(only in train: {only_train}, only in test: {only_test})"
        )
    parts: list[str] = []
    entries: dict[str, list] = {}
    for split in ("train", "test"):
        rows = []
        for label, cls in enumerate(train_classes):
            class_dir = os.path.join(root, split, cls)
            files = _scan_class_dir(class_dir, f"{split}/{cls}/")
            if not files:
                raise DataFormatError(
                    f"class folder {class_dir!r} holds no image files "
                    f"(extensions: {', '.join(IMG_EXTENSIONS)})"
                )
            for rel, path, size, mtime in files:
                rows.append((path, label))
                parts.append(f"{rel}\0{size}\0{mtime}")
        entries[split] = rows
    return train_classes, entries, hashlib.sha1("\n".join(parts).encode()).hexdigest()


def _list_classes(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise DataNotFoundError(
            f"image folder split {str(split_dir)!r} does not exist; an image folder root needs "
            f"train/<class>/ and test/<class>/ sub-folders. {LOCAL_COPY_HINT}."
        )
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and e.name[0] != ".")


def _scan_class_dir(class_dir: str, rel_prefix: str) -> list[tuple[str, str, int, int]]:
    """(path relative to the root, absolute path, size, mtime_ns) of every image under
    class_dir (recursively), sorted by relative path."""
    out = []
    stack = [(class_dir, rel_prefix)]
    while stack:
        d, prefix = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                name = e.name
                if name[0] == ".":
                    continue
                if e.is_dir():
                    stack.append((e.path, f"{prefix}{name}/"))
                elif name.lower().endswith(IMG_EXTENSIONS):
                    st = e.stat()
                    out.append((f"{prefix}{name}", e.path, st.st_size, st.st_mtime_ns))
    out.sort()
    return out


def _folder_labels(name: str, root: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    """Final class names and a folder-index -> label map, checked for the dataset."""
    ident = list(range(len(classes)))
    if name == "cifar10":
        if len(classes) != 10:
            raise DataFormatError(
                f"cifar10 image folder {str(root)!r} has {len(classes)} class folders "
                f"{classes}; CIFAR-10 has 10"
            )
        return classes, ident
    if name == "cifar20":
        if sorted(classes) == sorted(CIFAR20_CLASSES):
            return list(CIFAR20_CLASSES), [CIFAR20_CLASSES.index(c) for c in classes]
        if sorted(classes) == sorted(CIFAR100_CLASSES):
            return list(CIFAR20_CLASSES), [
                CIFAR100_FINE_TO_COARSE[CIFAR100_CLASSES.index(c)] for c in classes
            ]
        raise DataFormatError(
            f"cifar20 image folder {str(root)!r}: class folders must be the 20 CIFAR-100 "
            "coarse names (e.g. aquatic_mammals, fish, ...) or the 100 fine names, got "
            f"{len(classes)} folders {classes[:5]}...; use the cifar-100-python files instead"
        )
    return classes, ident
