"""Image-folder datasets: ``train/<class>/<images>`` and ``test/<class>/<images>`` under a root.

Scanning lists the classes (sorted folder names, the same in train/ and test/), every image
file and a fingerprint of them; the class folders are mapped to the dataset's labels (for
cifar20 the 20 coarse or the 100 fine CIFAR-100 names); the images are decoded once and
served from the decoded-array cache afterwards.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

import torch

from core.data.bundle import DataBundle
from core.data.cache import cache_key, read_cached, write_cached
from core.data.decode import decode_files
from core.data.errors import DataFormatError, DataNotFoundError
from core.data.labels import (
    CIFAR10_CLASSES,
    CIFAR20_CLASSES,
    CIFAR100_CLASSES,
    CIFAR100_FINE_TO_COARSE,
)
from core.data.locations import CIFAR100_NEEDED, LOCAL_COPY_HINT
from core.errors import refusal

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

    # train/ and test/ decoded as one list: images of mixed sizes (across the splits too) are
    # refused in one message, with every undecodable file.
    rows = entries["train"] + entries["test"]
    x = decode_files([r[0] for r in rows], where=str(root))
    lut = torch.as_tensor(label_map, dtype=torch.int64)
    y = lut[torch.as_tensor([r[1] for r in rows], dtype=torch.int64)]
    n = len(entries["train"])
    # own storages, as two separate decodes would give: a pickled test_x alone (e.g. shipped
    # to a Ray worker) must not carry the train images along
    train_x, test_x = x[:n].clone(), x[n:].clone()
    del x
    bundle = DataBundle(
        train_x, y[:n].clone(), test_x, y[n:].clone(), num_classes=len(classes), classes=classes,
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
    empty: list[str] = []
    others: Counter[str] = Counter()
    for split in ("train", "test"):
        rows = []
        for label, cls in enumerate(train_classes):
            class_dir = os.path.join(root, split, cls)
            files, other = _scan_class_dir(class_dir, f"{split}/{cls}/")
            others.update(other)
            if not files:
                empty.append(f"{split}/{cls}")
            for rel, path, size, mtime in files:
                rows.append((path, label))
                parts.append(f"{rel}\0{size}\0{mtime}")
        entries[split] = rows
    if empty:
        _refuse_empty(root, empty, 2 * len(train_classes), others)
    return train_classes, entries, hashlib.sha1("\n".join(parts).encode()).hexdigest()


def _refuse_empty(root: Path, empty: list[str], total: int, others: Counter[str]) -> None:
    """Refuse an image folder whose class folders (all, or those in `empty`) hold no image."""
    if others:
        kinds = ", ".join(f"{ext or '(no extension)'}: {n:,}" for ext, n in others.most_common(5))
        found = f"found {sum(others.values()):,} other files ({kinds})"
    else:
        found = "found no other files either"
    allowed = f"image files ending in {', '.join(IMG_EXTENSIONS)}"
    if len(empty) == total:
        raise DataFormatError(
            f"image folder {str(root)!r}: none of its {total} class folders (train/<class>/, "
            f"test/<class>/) holds an image file; {found}; allowed: {allowed}"
        )
    shown = ", ".join(empty[:10]) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
    raise DataFormatError(
        f"image folder {str(root)!r}: {len(empty)} of its {total} class folders hold no image "
        f"file: {shown}; {found}; every class folder needs at least one of the {allowed} "
        "(add images or remove the class from both train/ and test/)"
    )


def _list_classes(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise DataNotFoundError(
            f"image folder split {str(split_dir)!r} does not exist; an image folder root needs "
            f"train/<class>/ and test/<class>/ sub-folders. {LOCAL_COPY_HINT}."
        )
    try:
        with os.scandir(split_dir) as it:
            return sorted(e.name for e in it if e.is_dir() and e.name[0] != ".")
    except OSError as e:
        raise DataFormatError(
            f"cannot list image folder split {str(split_dir)!r}: {type(e).__name__}: "
            f"{e.strerror or e}"
        ) from e


def _scan_class_dir(
    class_dir: str, rel_prefix: str
) -> tuple[list[tuple[str, str, int, int]], Counter[str]]:
    """(path relative to the root, absolute path, size, mtime_ns) of every image under
    class_dir (recursively), sorted by relative path; and the extensions of the other files."""
    out = []
    other: Counter[str] = Counter()
    stack = [(class_dir, rel_prefix)]
    while stack:
        d, prefix = stack.pop()
        try:
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
                    else:
                        other[os.path.splitext(name)[1].lower()] += 1
        except OSError as e:
            raise DataFormatError(
                f"cannot list class folder {d!r}: {type(e).__name__}: {e.strerror or e}"
            ) from e
    out.sort()
    return out, other


def _folder_labels(name: str, root: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    """Final class names and a folder-index -> label map, checked for the dataset."""
    ident = list(range(len(classes)))
    found = sorted(classes)
    if name == "cifar10":
        if len(classes) != 10:
            other = (
                "; these are CIFAR-100 class folders: use dataset 'cifar20' (--dataset cifar20)"
                if found in (sorted(CIFAR20_CLASSES), sorted(CIFAR100_CLASSES))
                else ""
            )
            raise DataFormatError(
                f"cifar10 image folder {str(root)!r} has {len(classes)} class folders "
                f"{_some(classes)}; CIFAR-10 has 10{other}"
            )
        return classes, ident
    if name == "cifar20":
        if found == sorted(CIFAR20_CLASSES):
            return list(CIFAR20_CLASSES), [CIFAR20_CLASSES.index(c) for c in classes]
        if found == sorted(CIFAR100_CLASSES):
            return list(CIFAR20_CLASSES), [
                CIFAR100_FINE_TO_COARSE[CIFAR100_CLASSES.index(c)] for c in classes
            ]
        if found == sorted(CIFAR10_CLASSES):
            raise DataFormatError(
                refusal(
                    "dataset",
                    name,
                    CIFAR100_NEEDED,
                    why=f"{str(root)!r} holds CIFAR-10 files (its class folders are the 10 "
                    "CIFAR-10 classes airplane ... truck); use dataset 'cifar10' for them",
                )
            )
        raise DataFormatError(
            f"cifar20 image folder {str(root)!r}: class folders must be the 20 CIFAR-100 "
            "coarse names (e.g. aquatic_mammals, fish, ...) or the 100 fine names, got "
            f"{len(classes)} folders {_some(classes)}; or use the cifar-100-python files"
        )
    return classes, ident


def _some(names: list[str], k: int = 5) -> str:
    """A list of names, at most k of them shown."""
    return str(names) if len(names) <= k else f"{names[:k]} (+{len(names) - k} more)"
