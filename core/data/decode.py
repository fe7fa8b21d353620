"""Image files to uint8 tensors: torchvision's decoder, PIL for the formats it cannot read.

`decode_files` turns a list of image paths into one (N, 3, H, W) tensor; every image must
have the same size, and a file that cannot be read or decoded is an error naming it.
"""

from __future__ import annotations

import functools
import io
import warnings

import numpy as np
import torch
from PIL import Image

from core.data.errors import DataFormatError

__all__ = ["decode_files"]


@functools.cache
def _torchvision_decoder():
    """torchvision's image decoder, or None. Deprecated since torchvision 0.29 (moving to
    torchcodec): PIL otherwise."""
    # Imported here, on the first decode, on purpose: importing torchvision costs ~2 s, which
    # every Ray trial worker would pay on `import core.data` although trials only ever get
    # decoded tensors (from the cache file or the pickles).
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:  # pragma: no cover - depends on the torchvision version
        return None
    return functools.partial(decode_image, mode=ImageReadMode.RGB)


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
        with Image.open(io.BytesIO(raw)) as im:
            arr = np.asarray(im.convert("RGB"))
    except Exception as e:  # PIL raises many types for broken files
        raise DataFormatError(f"cannot decode image file {path!r}: {type(e).__name__}: {e}") from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def decode_files(paths: list[str]) -> torch.Tensor:
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
