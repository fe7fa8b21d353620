"""The two ways data can fail: not where it was looked for, or there but unusable.

A refused config value (a bad dataset name, a subset larger than the data) is a
`core.errors.ConfigError`, not one of these: these are about files on disk.
"""

from __future__ import annotations

__all__ = ["DataFormatError", "DataNotFoundError"]


class DataNotFoundError(FileNotFoundError):
    """The data (directory, files) is not where it was looked for; the message says where
    it looked and how to point at a local copy."""

    def __str__(self) -> str:  # FileNotFoundError(msg) would print "msg" anyway; be explicit
        return str(self.args[0]) if self.args else ""


class DataFormatError(ValueError):
    """The data is there but unusable: corrupt image, no classes, mismatched class lists..."""
