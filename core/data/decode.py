"""Image files to uint8 tensors: torchvision's decoder, PIL for the formats it cannot read.

`decode_files` turns a list of image paths into one (N, 3, H, W) tensor. Every file is tried:
files that cannot be read or decoded, and images whose size differs from the others, are
collected and refused together in one `DataFormatError` line naming the files (one of each
size, with the counts), so a single corrupt JPEG among 30,000 is named, not a traceback.
"""

from __future__ import annotations

import functools
import io
import struct
import warnings
from collections import Counter

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from core.data.errors import DataFormatError

__all__ = ["decode_files"]

# What PIL raises on a file that is not a readable image: UnidentifiedImageError (an OSError)
# when no format matches, OSError ("image file is truncated") on a cut-off file, SyntaxError
# ("broken PNG file"), ValueError / EOFError / struct.error from format plugins reading garbage,
# DecompressionBombError on absurd sizes.
_PIL_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
)

_NAMED = 3  # undecodable files named in the message; the rest are counted


class _Undecodable(Exception):
    """One file that is not a readable image; the message says why (internal)."""


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
    faster than PIL here, same pixels), PIL for what it cannot read (BMP, TIFF, PPM...);
    `_Undecodable` when neither can."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise _Undecodable(f"cannot be read: {type(e).__name__}: {e.strerror or e}") from e
    if not raw:  # torch.frombuffer refuses an empty buffer
        raise _Undecodable("an empty file, 0 bytes")
    decode = _torchvision_decoder()
    if decode is not None:
        try:
            return decode(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
        except RuntimeError:  # an unsupported format or a corrupt file: let PIL decide
            pass
    try:
        with Image.open(io.BytesIO(raw)) as im:
            arr = np.asarray(im.convert("RGB"))
    except UnidentifiedImageError as e:
        raise _Undecodable(f"{len(raw):,} bytes, not in any image format PIL can read") from e
    except _PIL_ERRORS as e:
        raise _Undecodable(f"{len(raw):,} bytes, {type(e).__name__}: {e}") from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def decode_files(paths: list[str], where: str = "") -> torch.Tensor:
    """All images as one uint8 tensor (N, 3, H, W); they must share one size.

    `where` (e.g. the image folder) is named in the errors.
    """
    with warnings.catch_warnings():
        # torchvision >= 0.29 warns on every decode call that its decoders are deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        return _decode_all(paths, where)


def _decode_all(paths: list[str], where: str) -> torch.Tensor:
    out: torch.Tensor | None = None
    bad: list[tuple[str, str]] = []
    sizes: Counter[tuple[int, ...]] = Counter()
    example: dict[tuple[int, ...], str] = {}
    for i, path in enumerate(paths):
        try:
            img = _decode_one(path)
        except _Undecodable as e:
            bad.append((path, str(e)))
            continue
        shape = tuple(img.shape)
        sizes[shape] += 1
        example.setdefault(shape, path)
        if out is None:
            out = torch.empty((len(paths), *shape), dtype=torch.uint8)
        if shape == tuple(out.shape[1:]):
            out[i] = img
    in_where = f" in {where!r}" if where else ""
    if bad:
        named = "; ".join(f"{p!r} ({why})" for p, why in bad[:_NAMED])
        more = f"; and {len(bad) - _NAMED:,} more" if len(bad) > _NAMED else ""
        raise DataFormatError(
            f"cannot decode {len(bad):,} of {len(paths):,} image files{in_where}: {named}{more}; "
            "every file with an image extension must be a readable image (replace or delete "
            "the files named)"
        )
    if len(sizes) > 1:
        found = ", ".join(
            f"{n:,} {'is' if n == 1 else 'are'} {s[2]}x{s[1]} (e.g. {example[s]!r})"
            for s, n in sorted(sizes.items(), key=lambda kv: -kv[1])
        )
        raise DataFormatError(
            f"images of {len(sizes)} sizes{in_where} (width x height): {found}; all images of "
            "an image folder, train/ and test/, must have one size (resize them to one)"
        )
    return out if out is not None else torch.empty((0, 3, 0, 0), dtype=torch.uint8)
