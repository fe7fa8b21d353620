"""A trial's checkpoint: the state `core.train.train` hands its reporter after every epoch it
did not diverge in, and the state it resumes from.

`TrialState` declares its keys once: the dict `capture` builds (what the Ray trainable writes
with torch.save) and the dict `restore` reads are both its fields, by name, so a checkpoint
written before this module existed loads as it did. The random generators' states (Python's,
NumPy's, torch's and CUDA's) are part of it, so a resumed trial draws what an uninterrupted one
would have drawn.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import numpy as np
import torch

from core.config import TrialConfig
from core.optim import load_optimizer_state_dict, optimizer_state_dict
from core.runtime import Runtime, load_model_state, unwrap


def rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's generators (and CUDA's, where present)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Set the generators to `rng_state()`'s states (CUDA's only where saved and present)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclasses.dataclass(frozen=True)
class TrialState:
    """What a checkpoint holds, one field per key of its dict (the key strings are the field
    names: changing one breaks resuming from the checkpoints already written)."""

    model: dict[str, torch.Tensor]  # the uncompiled module's: no `_orig_mod.`, loads either way
    optimizer: dict[str, Any]  # core.optim.optimizer_state_dict: IVON's step count too
    scheduler: dict[str, Any]
    rng: dict[str, Any]  # rng_state()
    epoch: int  # the last epoch trained: a resumed trial continues at the next
    best_val: float  # early stopping: the best validation loss so far
    bad_epochs: int  # and the epochs since it last improved
    config: dict[str, Any]  # TrialConfig.to_dict()
    runtime: dict[str, Any]  # Runtime.as_dict(): what the trial computed on
    # The best validation accuracy so far: the epoch of the trial's predictions file
    # (core.predictions); a checkpoint written before the file existed has none (-inf).
    best_val_acc: float = -math.inf

    def as_dict(self) -> dict[str, Any]:
        """The checkpoint's dict, keys in field order (not dataclasses.asdict: no copies)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TrialState:
        """The checkpoint of `state`; a key added later (it has a default) may be missing."""
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        return cls(
            **{k: state[k] for k in required},
            **{
                f.name: state[f.name]
                for f in dataclasses.fields(cls)
                if f.name not in required and f.name in state
            },
        )


def capture(
    model,
    optimizer,
    scheduler,
    cfg: TrialConfig,
    runtime: Runtime,
    *,
    epoch: int,
    best_val: float,
    bad_epochs: int,
    best_val_acc: float = -math.inf,
) -> dict[str, Any]:
    """The checkpoint of a trial after `epoch`: live tensors (the reporter writes them at once)."""
    return TrialState(
        model=unwrap(model).state_dict(),
        optimizer=optimizer_state_dict(optimizer),
        scheduler=scheduler.state_dict(),
        rng=rng_state(),
        epoch=epoch,
        best_val=best_val,
        bad_epochs=bad_epochs,
        config=cfg.to_dict(),
        runtime=runtime.as_dict(),
        best_val_acc=best_val_acc,
    ).as_dict()


def restore(state: dict[str, Any], model, optimizer, scheduler) -> TrialState:
    """Load a checkpoint's model, optimizer, scheduler and generator states into a freshly built
    trial; returns the checkpoint, whose epoch and early-stopping counts the caller continues."""
    saved = TrialState.from_dict(state)
    load_model_state(model, saved.model)  # into the uncompiled module
    load_optimizer_state_dict(optimizer, saved.optimizer)
    scheduler.load_state_dict(saved.scheduler)
    set_rng_state(saved.rng)
    return saved
