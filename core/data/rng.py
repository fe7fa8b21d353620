"""The one seeding rule of the data code: a torch.Generator per (seed, stream).

Splits draw from streams 0 (train) and 1 (test); `TensorLoader` draws each epoch's order and
augmentation from stream = epoch. numpy's SeedSequence mixes the pair, so neighbouring seeds
and streams give unrelated generators.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["seeded_generator"]


def seeded_generator(seed: int, stream: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)
