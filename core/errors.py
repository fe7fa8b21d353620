"""The one error type of a refused value, and the one wording of every refusal.

Every refusal names what was given, why it is refused and what is allowed, in one line, so
that a user can fix it without reading code. The wording lives here only: config checks,
layers, data loading and the study scripts' options all build their messages with `refusal`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["ConfigError", "DataError", "refusal"]


class ConfigError(ValueError):
    """A value that is not allowed; the message names field, value and allowed set."""


class DataError(Exception):
    """Data files that are missing or unusable (core.data raises the two kinds); ``str(e)`` is
    the message on one line. Declared here, torch-free, so that a command line can catch it
    without importing the data code."""

    def __str__(self) -> str:  # FileNotFoundError(msg) would print "msg" anyway; be explicit
        msg = str(self.args[0]) if self.args else ""
        return re.sub(r"\s*[\r\n]+\s*", " ", msg).strip()


def refusal(
    name: str,
    value: Any,
    allowed: str | Iterable[Any],
    why: str | None = None,
    what: str | None = None,
) -> str:
    """One line: `name=value` and what is allowed, optionally why the value is refused.

    * allowed a collection:  ``dataset='mnist' is not allowed; choose one of ['cifar10', ...]``
    * allowed a phrase:      ``epochs=0: must be an integer >= 1``
    * with `what`:           ``alpha=2: fast-weight init must be a number in [-1, 1]``
    * with `why`:            ``patience=3: <why>; allowed: <allowed>``

    `name` is a config field (``seed``) or a command-line option (``--seeds``).
    """
    given = f"{name}={value!r}"
    if what is not None and why is None:
        return f"{given}: {what} must be {allowed}"
    if not isinstance(allowed, str):
        choices = list(allowed)
        if why is None:
            return f"{given} is not allowed; choose one of {choices}"
        allowed = str(choices)
    if why is None:
        return f"{given}: must be {allowed}"
    return f"{given}: {why}; allowed: {allowed}"
