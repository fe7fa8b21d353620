"""Datasets as uint8 tensors in memory, stratified splits and a tensor batch loader.

Datasets (``load_dataset(name, data_dir)``):

* ``cifar10``: the torchvision python-pickle files (``cifar-10-batches-py``) or an ImageFolder
  layout (``train/<class>/*.jpg|png``, ``test/<class>/...``, 10 classes) under data_dir.
* ``cifar20``: CIFAR-100 with its 20 official coarse ("superclass") labels, read from the
  ``coarse_labels`` of the python-pickle files (``cifar-100-python``). An ImageFolder layout works
  when its class folders are the 20 coarse names, or the 100 fine names (mapped to coarse with
  `CIFAR100_FINE_TO_COARSE`).
* ``imagefolder``: any root holding ``train/<class>/`` and ``test/<class>/`` image files of one
  size.

Where the data is looked for: the explicit ``data_dir``, else ``$ENSEMBLE_DATA_DIR``, else
``<user cache>/data`` (``$XDG_CACHE_HOME/ensemble-efficiency/data`` or
``~/.cache/ensemble-efficiency/data``), into which CIFAR is downloaded with torchvision when
missing. For cifar10/cifar20 the directory itself and its ``cifar10`` / ``cifar20`` /
``cifar100`` sub-folder are searched, so ENSEMBLE_DATA_DIR may name a folder of datasets.

Image folders are decoded once (torchvision.io, PIL as a fallback for other formats) and the
decoded arrays are cached in one ``.pt`` file keyed by dataset name, absolute path and a
fingerprint of the image files (relative paths, sizes, mtimes): next to the data
(``<root>/.ensemble-cache-<name>.pt``) when that folder is writable (a real write attempt
succeeds and its permission bits grant write: root ignores permissions, but a folder marked
dr-xr-xr-x, like ../shared, is left alone), else in ``<user cache>/decoded/``. A second load
reads that file (well under a second for the 30,000 CIFAR-10 JPEGs). Pickle layouts are read
directly (they are arrays already).

Batches come from `TensorLoader`: tensors moved to the device once, shuffling with its own
generator seeded per (seed, epoch), random 4-pixel-padded crop and horizontal flip done on the
whole batch as one gather, then float conversion and normalisation.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import math
import os
import pickle
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.config import ConfigError, TrialConfig

log = logging.getLogger(__name__)

DATASETS = ("cifar10", "cifar20", "imagefolder")
ENV_DATA_DIR = "ENSEMBLE_DATA_DIR"
APP_NAME = "ensemble-efficiency"
CACHE_VERSION = 1
IMG_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp",
)  # fmt: skip
CROP_PADDING = 4


@functools.cache
def _torchvision_decoder():
    """torchvision's image decoder, or None. Imported on first decode only: torchvision costs
    ~2 s of import time, paid by every Ray trial worker otherwise, though trials get decoded
    tensors. Deprecated since torchvision 0.29 (moving to torchcodec): PIL otherwise."""
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:  # pragma: no cover - depends on the torchvision version
        return None
    return functools.partial(decode_image, mode=ImageReadMode.RGB)


CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

# CIFAR-100 fine label names in label order (the `fine_label_names` of the dataset's meta).
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip

# The 20 coarse label names in label order (the `coarse_label_names` of the dataset's meta).
CIFAR20_CLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
)  # fmt: skip

# Official fine -> coarse table: CIFAR100_FINE_TO_COARSE[fine label] = coarse label, as given
# by the `fine_labels` / `coarse_labels` pairs of the CIFAR-100 python files
# (e.g. apple 0 -> fruit_and_vegetables 4, aquarium_fish 1 -> fish 1, baby 2 -> people 14).
CIFAR100_FINE_TO_COARSE = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3,
    3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
    0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10,
    16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19,
    2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
    18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)  # fmt: skip


class DataNotFoundError(FileNotFoundError):
    """The data (directory, files) is not where it was looked for; the message says where
    it looked and how to point at a local copy."""

    def __str__(self) -> str:  # FileNotFoundError(msg) would print "msg" anyway; be explicit
        return str(self.args[0]) if self.args else ""


class DataFormatError(ValueError):
    """The data is there but unusable: corrupt image, no classes, mismatched class lists..."""


_HINT = (
    "Point at a local copy with data_dir=... (TrialConfig.data_dir / --data-dir) or the "
    f"{ENV_DATA_DIR} environment variable"
)


# ---------------------------------------------------------------------------- the bundle


@dataclass(repr=False)
class DataBundle:
    """A dataset in memory: uint8 images (N, 3, H, W) and int64 labels (N,).

    num_classes / classes default from the labels; mean / std (per channel, [0, 1] units)
    default to the statistics of train_x. val_x / val_y are None without a validation split.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int = 0
    classes: list[str] = field(default_factory=list)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    name: str = ""
    source: str = ""
    cache_path: str | None = None

    def __post_init__(self) -> None:
        pairs = [("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)]
        if (self.val_x is None) != (self.val_y is None):
            raise ValueError("val_x and val_y must both be set or both be None")
        if self.val_x is not None:
            pairs.append(("val", self.val_x, self.val_y))
        for split, x, y in pairs:
            if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(
                    f"{split}_x must be a uint8 tensor shaped (N, C, H, W), got "
                    f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}"
                )
            if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"{split}_y must be a tensor shaped ({x.shape[0]},) matching {split}_x, got "
                    f"{tuple(getattr(y, 'shape', ()))}"
                )
        self.train_y = self.train_y.to(torch.int64)
        self.test_y = self.test_y.to(torch.int64)
        if self.val_y is not None:
            self.val_y = self.val_y.to(torch.int64)
        if not self.num_classes:
            ys = [y for _, _, y in pairs if y.numel()]
            self.num_classes = int(max(int(y.max()) for y in ys)) + 1 if ys else 0
        if not self.classes:
            self.classes = [str(i) for i in range(self.num_classes)]
        self.classes = list(self.classes)
        if len(self.classes) != self.num_classes:
            raise ValueError(
                f"classes has {len(self.classes)} names but num_classes={self.num_classes}"
            )
        for split, _, y in pairs:
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(f"{split}_y has labels outside [0, {self.num_classes - 1}]")
        if self.mean is None or self.std is None:
            self.mean, self.std = channel_stats(self.train_x)
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)

    @property
    def num_train(self) -> int:
        """Number of training examples (after any subset / validation split)."""
        return int(self.train_x.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.test_x.shape[0])

    @property
    def num_val(self) -> int:
        return 0 if self.val_x is None else int(self.val_x.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"DataBundle(name={self.name!r}, train={self.num_train}, val={self.num_val}, "
            f"test={self.num_test}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes}, source={self.source!r})"
        )


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W), in [0, 1] units.

    Exact (from a 256-bin histogram per channel) and fast: no float copy of the images.
    """
    c = x.shape[1]
    if x.shape[0] == 0:
        return (0.5,) * c, (0.25,) * c
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for ch in range(c):
        hist = torch.bincount(x[:, ch].reshape(-1), minlength=256).cpu().to(torch.float64)
        n = hist.sum()
        mean = (hist * values).sum() / n
        var = ((hist * values.square()).sum() / n - mean.square()).clamp_min(0.0)
        means.append(float(mean) / 255)
        stds.append(max(float(var.sqrt()), 1e-3 * 255) / 255)  # constant images: no 1/0
    return tuple(means), tuple(stds)


# ---------------------------------------------------------------------------- locations


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


# ---------------------------------------------------------------------------- loading


def load_dataset(
    name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True
) -> DataBundle:
    """Load the full train and test sets of `name` as uint8 tensors (see the module doc)."""
    if name not in DATASETS:
        raise ConfigError(f"dataset={name!r} is not allowed; choose one of {list(DATASETS)}")
    root, how = resolve_data_dir(data_dir)
    if name == "imagefolder" and how == "default":
        raise ConfigError(
            "data_dir=None: dataset 'imagefolder' needs data_dir (or "
            f"{ENV_DATA_DIR}) set to a root holding train/<class>/ and test/<class>/"
        )
    if how != "default" and not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a directory"
        raise DataNotFoundError(
            f"data directory {str(root)!r} (from {how}) {what}. {_HINT}; the default, "
            f"without either, is {str(default_data_dir())!r} (CIFAR is downloaded there)."
        )
    if name == "imagefolder":
        return _load_imagefolder(root, name)

    layout, tried = _find_layout(name, root)
    if layout is None and download:
        try:
            _download(name, root)
        except Exception as e:  # network errors come in many types
            raise DataNotFoundError(
                f"{name} data not found; looked in: {', '.join(tried)}. Downloading it into "
                f"{str(root)!r} failed ({type(e).__name__}: {e}). {_HINT}, e.g. a folder "
                "holding the torchvision python files (cifar-10-batches-py / "
                "cifar-100-python) or train/<class>/ and test/<class>/ images."
            ) from e
        layout, tried2 = _find_layout(name, root)
        tried += [t for t in tried2 if t not in tried]
    if layout is None:
        raise DataNotFoundError(
            f"{name} data not found; looked in: {', '.join(tried)}"
            f"{'' if download else ' (download=False)'}. {_HINT}, e.g. a folder holding the "
            "torchvision python files (cifar-10-batches-py / cifar-100-python) or "
            "train/<class>/ and test/<class>/ images."
        )
    kind, path = layout
    if kind == "pickle":
        return _load_cifar_pickle(name, path)
    return _load_imagefolder(path, name)


def _find_layout(name: str, root: Path) -> tuple[tuple[str, Path] | None, list[str]]:
    """(('pickle' | 'folder', path) or None, descriptions of the places tried)."""
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


def _download(name: str, root: Path) -> None:
    from torchvision import datasets

    root.mkdir(parents=True, exist_ok=True)
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    for train in (True, False):
        cls(str(root), train=train, download=True)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except FileNotFoundError as e:
        raise DataNotFoundError(f"CIFAR file {str(path)!r} is missing. {_HINT}.") from e
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


def _load_cifar_pickle(name: str, path: Path) -> DataBundle:
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


# ---------------------------------------------------------------------------- image folders


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


def _list_classes(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise DataNotFoundError(
            f"image folder split {str(split_dir)!r} does not exist; an image folder root needs "
            f"train/<class>/ and test/<class>/ sub-folders. {_HINT}."
        )
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and e.name[0] != ".")


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


def _decode_one(path: str) -> torch.Tensor:
    """One image as uint8 (3, H, W): torchvision's decoder (libjpeg-turbo / libpng, about 2.5x
    faster than PIL here, same pixels), PIL for what it cannot read; a file neither can
    decode is an error naming it."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataFormatError(f"cannot read image file {path!r}: {e}") from e
    decode = _torchvision_decoder()
    if decode is not None:
        try:
            return decode(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
        except Exception:  # unsupported format or corrupt: let PIL decide
            pass
    try:
        from PIL import Image

        with Image.open(io.BytesIO(raw)) as im:
            arr = np.asarray(im.convert("RGB"))
    except Exception as e:  # PIL raises many types for broken files
        raise DataFormatError(f"cannot decode image file {path!r}: {type(e).__name__}: {e}") from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def _decode_files(paths: list[str]) -> torch.Tensor:
    """All images as one uint8 tensor (N, 3, H, W); they must share one size."""
    with warnings.catch_warnings():
        # torchvision >= 0.29 warns on every decode call that its decoders are deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        return _decode_all(paths)


def _decode_all(paths: list[str]) -> torch.Tensor:
    first = _decode_one(paths[0])
    out = torch.empty((len(paths), *first.shape), dtype=torch.uint8)
    out[0] = first
    for i in range(1, len(paths)):
        img = _decode_one(paths[i])
        if img.shape != first.shape:
            raise DataFormatError(
                f"image file {paths[i]!r} is {tuple(img.shape)} (C, H, W) but {paths[0]!r} is "
                f"{tuple(first.shape)}; all images of an image folder must have the same size"
            )
        out[i] = img
    return out


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


def cache_paths(root: Path, name: str) -> tuple[Path, Path]:
    """(next to the data, in the user cache) locations of the decoded-array cache file."""
    root = Path(root).resolve()
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:16]
    return (
        root / f".ensemble-cache-{name}.pt",
        user_cache_dir() / "decoded" / f"{name}-{root.name}-{digest}.pt",
    )


def _read_cache(path: Path, key: str) -> dict | None:
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


def _write_cache(path: Path, payload: dict) -> bool:
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


def _load_imagefolder(root: Path, name: str) -> DataBundle:
    root = Path(root)
    folder_classes, entries, fingerprint = scan_imagefolder(root)
    classes, label_map = _folder_labels(name, root, folder_classes)
    key = f"v{CACHE_VERSION}|{name}|{root.resolve()}|{fingerprint}"
    near, far = cache_paths(root, name)
    for path in (near, far):
        obj = _read_cache(path, key)
        if obj is not None:
            return DataBundle(
                obj["train_x"], obj["train_y"], obj["test_x"], obj["test_y"],
                num_classes=len(obj["classes"]), classes=list(obj["classes"]),
                mean=tuple(obj["mean"]), std=tuple(obj["std"]), name=name, source=str(root),
                cache_path=str(path),
            )  # fmt: skip

    lut = torch.as_tensor(label_map, dtype=torch.int64)
    arrays = {}
    for split in ("train", "test"):
        rows = entries[split]
        x = _decode_files([r[0] for r in rows])
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
    payload = {
        "key": key,
        "train_x": bundle.train_x, "train_y": bundle.train_y,
        "test_x": bundle.test_x, "test_y": bundle.test_y,
        "classes": list(classes), "mean": list(bundle.mean), "std": list(bundle.std),
    }  # fmt: skip
    targets = [near, far] if _dir_writable(root) else [far]
    for path in targets:
        if _write_cache(path, payload):
            bundle.cache_path = str(path)
            break
    return bundle


# ---------------------------------------------------------------------------- splits


def _balanced_allocation(counts: list[int], n: int) -> list[int]:
    """Split n over classes as evenly as their sizes allow (counts differ by <= 1 unless a
    class runs out)."""
    k = len(counts)
    alloc = [0] * k
    remaining = n
    for i, c in enumerate(sorted(range(k), key=lambda c: (counts[c], c))):
        take = min(counts[c], remaining // (k - i))
        alloc[c] = take
        remaining -= take
    while remaining > 0:
        for c in range(k):
            if remaining and alloc[c] < counts[c]:
                alloc[c] += 1
                remaining -= 1
    return alloc


def _generator(seed: int, stream: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


def _stratified_indices(
    y: torch.Tensor, num_classes: int, n: int | None, g: torch.Generator, field_name: str
) -> list[torch.Tensor]:
    """Per class, a random permutation of (a balanced share of n of) its indices."""
    per_class = [torch.nonzero(y == c).flatten() for c in range(num_classes)]
    counts = [len(ix) for ix in per_class]
    total = sum(counts)
    if n is None:
        alloc = counts
    else:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"{field_name}={n!r}: must be an integer >= 1 (or None for all)")
        if n > total:
            raise ConfigError(
                f"{field_name}={n}: larger than the {total} examples available; allowed: "
                f"1..{total} or None"
            )
        alloc = _balanced_allocation(counts, n)
    return [
        ix[torch.randperm(len(ix), generator=g)[:a]] for ix, a in zip(per_class, alloc, strict=True)
    ]


def split_data(
    bundle: DataBundle,
    *,
    train_subset: int | None = None,
    test_subset: int | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> DataBundle:
    """A new bundle with a stratified train subset, test subset and validation split.

    train_subset / test_subset: number of examples drawn per class as evenly as possible
    (None: all). val_fraction: the share of each class of the (subset of the) training set
    held out as validation (rounded per class; at least one example per class stays in
    train). Deterministic for a given seed; indices keep their original order. mean / std
    are recomputed from the resulting training set.
    """
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, int | float)
        or not (0.0 <= val_fraction < 1.0)
    ):
        raise ConfigError(f"val_fraction={val_fraction!r}: must be a number in [0, 1)")
    if val_fraction > 0 and bundle.val_x is not None:
        raise ConfigError(
            f"val_fraction={val_fraction}: this bundle already has a validation split of "
            f"{bundle.num_val} examples; split the unsplit bundle instead"
        )
    k = bundle.num_classes
    train_parts = _stratified_indices(
        bundle.train_y, k, train_subset, _generator(seed, 0), "train_subset"
    )
    test_parts = _stratified_indices(
        bundle.test_y, k, test_subset, _generator(seed, 1), "test_subset"
    )
    tr, va = [], []
    for ix in train_parts:
        n_val = math.floor(val_fraction * len(ix) + 0.5) if val_fraction > 0 else 0
        n_val = min(n_val, max(len(ix) - 1, 0))
        va.append(ix[:n_val])
        tr.append(ix[n_val:])
    train_idx = torch.sort(torch.cat(tr)).values
    val_idx = torch.sort(torch.cat(va)).values
    test_idx = torch.sort(torch.cat(test_parts)).values
    if val_fraction > 0 and len(val_idx) == 0:
        raise ConfigError(
            f"val_fraction={val_fraction}: with {len(train_idx)} training examples over "
            f"{k} classes this leaves an empty validation split; raise val_fraction or "
            "train_subset"
        )
    val_x = bundle.val_x
    val_y = bundle.val_y
    if val_fraction > 0:
        val_x, val_y = bundle.train_x[val_idx], bundle.train_y[val_idx]
    train_x = bundle.train_x[train_idx]
    mean, std = channel_stats(train_x)
    return replace(
        bundle,
        train_x=train_x,
        train_y=bundle.train_y[train_idx],
        test_x=bundle.test_x[test_idx],
        test_y=bundle.test_y[test_idx],
        val_x=val_x,
        val_y=val_y,
        mean=mean,
        std=std,
    )


def load_for_config(cfg: TrialConfig, data: DataBundle | None = None) -> DataBundle:
    """Load cfg.dataset (unless `data` is given) and split it as cfg says, with split seed 0
    so that every trial of a study sees the same split."""
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir)
    elif data.name and data.name != cfg.dataset:
        raise ConfigError(
            f"dataset={cfg.dataset!r} but the data passed in is {data.name!r}; pass the "
            "matching DataBundle or data=None"
        )
    return split_data(
        data,
        train_subset=cfg.train_subset,
        test_subset=cfg.test_subset,
        val_fraction=cfg.val_fraction,
        seed=0,
    )


# ---------------------------------------------------------------------------- batches


class TensorLoader:
    """Batches (x float (B, C, H, W) normalised, y int64 (B,)) from uint8 tensors in memory.

    The tensors are moved to `device` once. Each pass (epoch) draws its shuffling order and
    augmentation from a torch.Generator seeded by (seed, epoch): the epoch is the value given
    to `set_epoch(e)` before the pass, else an internal counter (0, 1, 2, ... per pass), so a
    resumed run that calls set_epoch reproduces the order. augment=True applies a random crop
    with 4-pixel zero padding and a random horizontal flip to every image, as one batched
    gather. len() is the number of batches.
    """

    def __init__(
        self,
        x_uint8: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: str | torch.device = "cpu",
        seed: int = 0,
        drop_last: bool = False,
    ):
        if x_uint8.dtype != torch.uint8 or x_uint8.dim() != 4:
            raise ValueError(
                f"x must be a uint8 tensor shaped (N, C, H, W), got {x_uint8.dtype} "
                f"{tuple(x_uint8.shape)}"
            )
        if y.dim() != 1 or y.shape[0] != x_uint8.shape[0]:
            raise ValueError(f"y must be shaped ({x_uint8.shape[0]},), got {tuple(y.shape)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r}: must be an integer >= 1")
        c = x_uint8.shape[1]
        if len(mean) != c or len(std) != c:
            raise ValueError(f"mean and std need {c} values (one per channel)")
        self.device = torch.device(device)
        self.x = x_uint8.to(self.device)
        self.y = y.to(self.device, torch.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = int(seed)
        self.drop_last = drop_last
        # normalisation in uint8 units: (x - 255 m) / (255 s)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self._mean = self._mean * 255.0
        self._std = self._std * 255.0
        self._next_epoch = 0

    @property
    def num_examples(self) -> int:
        return int(self.y.shape[0])

    def __len__(self) -> int:
        n = self.num_examples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use the order and augmentation of `epoch`."""
        self._next_epoch = int(epoch)

    def __iter__(self):
        epoch = self._next_epoch
        self._next_epoch += 1
        return self._iterate(epoch)

    def _iterate(self, epoch: int):
        g = _generator(self.seed, epoch)
        n = self.num_examples
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            xb = self.x[idx]
            if self.augment:
                xb = self._augment(xb, g)
            yield (xb.float() - self._mean) / self._std, self.y[idx]

    def _augment(self, xb: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, c, h, w = xb.shape
        p = CROP_PADDING
        padded = F.pad(xb, (p, p, p, p))  # zeros, like torchvision's RandomCrop(padding=4)
        oy = torch.randint(0, 2 * p + 1, (b, 1), generator=g).to(self.device)
        ox = torch.randint(0, 2 * p + 1, (b, 1), generator=g).to(self.device)
        flip = (torch.rand(b, 1, generator=g) < 0.5).to(self.device)
        rows = oy + torch.arange(h, device=self.device)  # (B, H)
        cols = ox + torch.arange(w, device=self.device)  # (B, W)
        cols = torch.where(flip, cols.flip(1), cols)  # horizontal flip = reversed columns
        bi = torch.arange(b, device=self.device).view(b, 1, 1, 1)
        ci = torch.arange(c, device=self.device).view(1, c, 1, 1)
        return padded[bi, ci, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]
