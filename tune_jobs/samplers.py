"""The multi-objective search's Optuna sampler, made picklable: Ray Tune pickles the searcher
(and the sampler inside it) into the experiment state when a study starts and at every
snapshot, which is what `--resume` restores from.

Optuna 5's genetic samplers (NSGA-II; `optuna.samplers._ga.BaseGASampler`) keep a
`threading.Lock` for their generation cache, and a lock cannot be pickled
(`TypeError: cannot pickle '_thread.lock' object` from `tune.Tuner(...)`). The lock guards
state inside one process only, so a copy needs a fresh lock, not the old one: the classes here
replace every lock in the sampler's state by a marker when pickled and make a new lock of the
same kind when unpickled. Optuna 4's samplers hold no lock, and pickle as before.

Imported by the search study when it builds its searcher (not at the script's start, so that
refusing an option never waits for Optuna's import).
"""

from __future__ import annotations

import threading
from typing import Any

import optuna

# The threading module's lock types (not importable by name) -> the factory that makes one.
_LOCK_TYPES = {type(threading.Lock()): "Lock", type(threading.RLock()): "RLock"}


class _FreshLock:
    """Stands for a lock in a pickled sampler: unpickled, it becomes a new lock of `kind`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind


class PicklableLocks:
    """Mixin for an Optuna sampler: pickles with fresh locks in place of its own."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key, value in state.items():
            if type(value) in _LOCK_TYPES:
                state[key] = _FreshLock(_LOCK_TYPES[type(value)])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if isinstance(value, _FreshLock):
                state[key] = getattr(threading, value.kind)()
        self.__dict__.update(state)


class NSGAIISampler(PicklableLocks, optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II sampler (the multi-objective search's), picklable on every Optuna
    version the project supports."""
