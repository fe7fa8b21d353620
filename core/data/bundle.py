"""`DataBundle`, a dataset held in memory as uint8 tensors, and its per-channel statistics.

Every reader (CIFAR pickles, image folders, the cache) returns a DataBundle and every split
makes a new one, so its checks (dtypes, shapes, label range) run on all data once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["DataBundle", "channel_stats"]


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
