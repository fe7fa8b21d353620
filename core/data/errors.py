"""The two ways data can fail: not where it was looked for, or there but unusable.

A refused config value (a bad dataset name, a subset larger than the data) is a
`core.errors.ConfigError`, not one of these: these are about files on disk. Both are a
`DataError`, so a command line catches ``(ConfigError, DataError)`` to print ``error: <message>``
and exit 2. Every message is one line (line breaks in wrapped texts, e.g. an OS or PIL error,
become spaces) naming the file or folder, what was found there and what is allowed.
"""

from __future__ import annotations

from core.errors import DataError

__all__ = ["DataError", "DataFormatError", "DataNotFoundError"]


class DataNotFoundError(DataError, FileNotFoundError):
    """The data (directory, files) is not where it was looked for; the message says where
    it looked and how to point at a local copy."""


class DataFormatError(DataError, ValueError):
    """The data is there but unusable: corrupt image, no classes, mismatched class lists..."""
