"""Data fixtures of the core tests: a tiny synthetic bundle for the tests that train on the
CPU in a moment (the real CIFAR-10 images are the root conftest's `cifar10`)."""

from __future__ import annotations

import pytest
import torch

from core.data import DataBundle


@pytest.fixture(scope="module")
def data() -> DataBundle:
    """80 training and 40 test images of 16x16 pixels, 4 classes, a little signal per class."""
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 4
        x = torch.randint(0, 160, (n, 3, 16, 16), generator=g)
        x[:, 0] += (y * 30).view(n, 1, 1)  # the class shifts the first channel
        return x.to(torch.uint8), y

    tx, ty = split(80)
    sx, sy = split(40)
    return DataBundle(tx, ty, sx, sy, num_classes=4, name="cifar10")
