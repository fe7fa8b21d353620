"""core.checkpoint: the checkpoint's keys, declared once, and a trial's state captured and
restored (tiny model, on the CPU)."""

from __future__ import annotations

import copy
import dataclasses
import random

import numpy as np
import pytest
import torch

from core.checkpoint import TrialState, capture, restore, rng_state, set_rng_state
from core.config import TrialConfig
from core.models import model_for_config
from core.optim import build_optimizer, train_step
from core.runtime import resolve_runtime
from tests.core.test_runtime import TINY

# The keys of every checkpoint written so far (the Ray trainable's state.pt files): renaming
# one would leave those unreadable.
WRITTEN_KEYS = [
    "model",
    "optimizer",
    "scheduler",
    "rng",
    "epoch",
    "best_val",
    "bad_epochs",
    "config",
    "runtime",
    "best_val_acc",  # added with the predictions file: missing from older checkpoints
]


def test_the_keys_are_those_of_the_checkpoints_already_written():
    assert [f.name for f in dataclasses.fields(TrialState)] == WRITTEN_KEYS


def draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_the_generators_continue_where_their_state_was_taken():
    state = rng_state()
    first = draws()
    draws()
    set_rng_state(state)
    assert draws() == first


def trial(cfg: TrialConfig):
    model = model_for_config(cfg, 4, in_channels=3)
    optimizer, scheduler = build_optimizer(model, cfg, 80, 3)
    return model, optimizer, scheduler


@pytest.mark.parametrize("optimizer", ["adam", "ivon"])
def test_a_captured_trial_restores_into_a_freshly_built_one(optimizer):
    cfg = TrialConfig.from_dict({**TINY, "optimizer": optimizer, "lr": 0.05})
    runtime = resolve_runtime(cfg, torch.device("cpu"))
    torch.manual_seed(0)
    model, opt, sched = trial(cfg)
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 4
    train_step(model, opt, x, y, cfg, sched, runtime.autocast)
    state = capture(model, opt, sched, cfg, runtime, epoch=3, best_val=0.5, bad_epochs=1)
    state = copy.deepcopy(state)  # live tensors (the Ray reporter writes them at once)
    assert list(state) == WRITTEN_KEYS
    assert state["config"] == cfg.to_dict() and state["runtime"] == runtime.as_dict()
    after = draws()

    torch.manual_seed(1)  # other initial weights, other generator states
    fresh, fresh_opt, fresh_sched = trial(cfg)
    saved = restore(state, fresh, fresh_opt, fresh_sched)
    assert (saved.epoch, saved.best_val, saved.bad_epochs) == (3, 0.5, 1)
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert fresh_sched.state_dict() == sched.state_dict()
    assert draws() == after  # the generators continue as after the capture
    # both take the same next step (from the same generator state: IVON samples its weights)
    losses = []
    for m, o, s in ((model, opt, sched), (fresh, fresh_opt, fresh_sched)):
        torch.manual_seed(2)
        losses.append(train_step(m, o, x, y, cfg, s, runtime.autocast)[0])
    assert losses[0] == losses[1]  # IVON's sampled weights: its restored Hessian estimate
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), k  # the update: the restored optimizer state
