"""The check vocabulary: small functions `(field name, value) -> None` that refuse a bad value
with one message naming the field, the value and what is allowed (`core.errors.refusal`).

Each check carries `allowed`, what it allows in words (a command's --help lists it), and
`knob(default, check)` declares a dataclass field with its check next to it. Torch-free.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Collection
from dataclasses import field
from typing import Any

from core.errors import ConfigError, refusal

__all__ = [
    "COUNT",
    "FAST_WEIGHT_ALLOWED",
    "POSITIVE",
    "Check",
    "fast_weight_init",
    "flag",
    "integer",
    "knob",
    "number",
    "one_of",
    "tags",
    "text_or_none",
]

FAST_WEIGHT_ALLOWED = (
    "a number in [-1, 1] or None "
    "(v<0: N(1,|v|), 0: ones, 0<v<=1: random signs with P(+1)=v, None: frozen ones)"
)

Check = Callable[[str, Any], None]  # (field name, value) -> None, or raises ConfigError


# ----------------------------------------------------------------------------------------------
# value checks: each returns a Check that words its refusal with `refusal`
# ----------------------------------------------------------------------------------------------
def one_of(allowed: Collection[Any]) -> Check:
    """A value from `allowed` (read at check time, so a registry may grow)."""

    def check(name: str, value: Any) -> None:
        if value not in allowed:
            raise ConfigError(refusal(name, value, list(allowed)))

    check.allowed = lambda: "one of " + ", ".join(map(str, allowed))  # type: ignore[attr-defined]
    return check


def integer(lo: int | None = None, hi: int | None = None, optional: bool = False) -> Check:
    """An int (never a bool) in [lo, hi] (either end open when None); None too when optional.
    A huge int (99999999999999999999) is refused here, before anything converts it."""
    if lo is not None and hi is not None:
        bounds = f" in [{lo}, {hi:,}]"
    elif lo is not None:
        bounds = f" >= {lo}"
    elif hi is not None:
        bounds = f" <= {hi:,}"
    else:
        bounds = ""
    phrase = "an integer" + bounds + (" or None" * optional)

    def check(name: str, value: Any) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(refusal(name, value, phrase))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(refusal(name, value, phrase))

    check.allowed = phrase  # type: ignore[attr-defined]
    return check


def number(
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    optional: bool = False,
) -> Check:
    """A finite real number in the interval; None too when optional."""
    rng = (
        f"{'(' if lo_open else '['}{'-inf' if lo is None else lo}, "
        f"{'inf' if hi is None else hi}{')' if hi_open else ']'}"
    )

    def check(name: str, value: Any) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(refusal(name, value, "a number" + " or None" * optional))
        if abs(value) > sys.float_info.max:  # an int no float holds: a refusal, no OverflowError
            raise ConfigError(refusal(name, value, f"in {rng}"))
        if math.isnan(value):
            raise ConfigError(refusal(name, value, "a number" + " or None" * optional))
        bad = (
            math.isinf(value)
            or (lo is not None and (value <= lo if lo_open else value < lo))
            or (hi is not None and (value >= hi if hi_open else value > hi))
        )
        if bad:
            raise ConfigError(refusal(name, value, f"in {rng}"))

    check.allowed = f"a number in {rng}" + " or None" * optional  # type: ignore[attr-defined]
    return check


def fast_weight_init(name: str, value: Any) -> None:
    """A fast-weight init value (core.layers.init_fast_weight): a number in [-1, 1] or None."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not -1.0 <= value <= 1.0:
        raise ConfigError(refusal(name, value, FAST_WEIGHT_ALLOWED, what="fast-weight init"))


def flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(refusal(name, value, "True or False"))


def text_or_none(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(refusal(name, value, "a path or None"))


# What each check allows, in words (`allowed_values`: a command's --help lists it).
fast_weight_init.allowed = FAST_WEIGHT_ALLOWED  # type: ignore[attr-defined]
flag.allowed = "True or False"  # type: ignore[attr-defined]
text_or_none.allowed = "a path or None"  # type: ignore[attr-defined]


def tags(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise ConfigError(refusal(name, value, "a dict of tags"))


def knob(default: Any, check: Check) -> Any:
    """A TrialConfig field with its allowed values declared next to it."""
    if callable(default):
        return field(default_factory=default, metadata={"check": check})
    return field(default=default, metadata={"check": check})


POSITIVE = number(lo=0.0, lo_open=True)
COUNT = integer(lo=1)  # a number of things: channels, classes, members
