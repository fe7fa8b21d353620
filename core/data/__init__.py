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
decoded arrays are cached in one ``.pt`` file keyed by dataset name, resolved path and a
fingerprint of the image files (relative paths, sizes, mtimes), never next to the data: in
``$ENSEMBLE_CACHE_DIR`` when set, else in ``<user cache>/decoded/``, named
``<name>-<hash of the path>-<hash of the key>.pt`` (`cache_file`); writing it prints one line
to stderr saying where, and a folder whose images changed replaces its old file. A second load
reads that file (well under a second for the 30,000 CIFAR-10 JPEGs); a cache folder that cannot
be written is a one-line warning, and the data is used uncached. Pickle layouts are read
directly (they are arrays already).

Files that are there but unusable are a `DataFormatError` (corrupt images, named together;
images of mixed sizes, one file of each size and the counts; class folders without images;
CIFAR-10 files given for cifar20 and the reverse), data not found a `DataNotFoundError`; both
are a `DataError` with a one-line message, so a command line catches
``(core.errors.ConfigError, DataError)`` to print ``error: <message>`` and exit 2.

The far-OOD sets of the robustness evaluation (``load_ood``, module ``ood``): Fashion-MNIST's
test images from Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``,
``$ENSEMBLE_FASHION_MNIST_DIR`` or ``ood_dir``), resized to 32 x 32 and replicated to 3
channels, or any folder of images (``ood_dir``).

Batches come from `TensorLoader`: tensors moved to the device once, shuffling with its own
generator seeded per (seed, epoch), random 4-pixel-padded crop and horizontal flip done on the
whole batch as one gather, then float conversion and normalisation.

Modules, one job each, in import order (no cycles; each imports only modules to its left):
`errors`, `bundle`, `labels`, `locations`, `rng` -> `decode` -> `cache` -> `cifar`,
`imagefolder` -> `datasets`, `ood` -> `splits`, `loader`. The names below are the package's public
API; the modules' own names (e.g. `core.data.cache.cache_key`) are for the package and its
tests.
"""

from __future__ import annotations

from core.data.bundle import DataBundle, channel_stats
from core.data.cache import cache_file
from core.data.datasets import load_dataset
from core.data.errors import DataError, DataFormatError, DataNotFoundError
from core.data.imagefolder import scan_imagefolder
from core.data.labels import (
    CIFAR10_CLASSES,
    CIFAR20_CLASSES,
    CIFAR100_CLASSES,
    CIFAR100_FINE_TO_COARSE,
)
from core.data.loader import TensorLoader
from core.data.locations import (
    ENV_CACHE_DIR,
    ENV_DATA_DIR,
    ENV_FASHION_MNIST_DIR,
    FASHION_MNIST_DIR,
    decoded_cache_dir,
    default_data_dir,
    resolve_data_dir,
    user_cache_dir,
)
from core.data.ood import load_ood
from core.data.splits import load_for_config, split_data, stratified_subset

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR20_CLASSES",
    "CIFAR100_CLASSES",
    "CIFAR100_FINE_TO_COARSE",
    "ENV_CACHE_DIR",
    "ENV_DATA_DIR",
    "ENV_FASHION_MNIST_DIR",
    "FASHION_MNIST_DIR",
    "DataBundle",
    "DataError",
    "DataFormatError",
    "DataNotFoundError",
    "TensorLoader",
    "cache_file",
    "channel_stats",
    "decoded_cache_dir",
    "default_data_dir",
    "load_dataset",
    "load_for_config",
    "load_ood",
    "resolve_data_dir",
    "scan_imagefolder",
    "split_data",
    "stratified_subset",
    "user_cache_dir",
]
