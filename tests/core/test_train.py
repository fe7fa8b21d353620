"""core.train: the training loop on the real CIFAR-10 images (learning, determinism, resume,
stopping), and the throughput timing."""

import copy
import math

import pytest
import torch

from core.config import TrialConfig
from core.train import time_train_steps, train
from tests.core.test_runtime import TINY

SMALL = dict(
    dataset="cifar10",
    arch="simple_cnn",
    ensemble="batch",
    ensemble_size=2,
    train_subset=200,
    test_subset=100,
    epochs=1,
    batch_size=64,
    num_threads=2,
    robustness=False,  # tests/core/test_robustness.py runs it (core.evaluate.Robustness)
)


def run(bundle, **changes):
    """train() with the states it checkpointed, as (history, states)."""
    cfg = TrialConfig.from_dict({**SMALL, **changes})
    states = []
    # The state holds live tensors (Ray's reporter writes them to disk at once): copy them.
    history = train(cfg, data=bundle, reporter=lambda m, s: states.append(copy.deepcopy(s)))
    return history, states


def test_short_training_beats_chance_clearly(cifar10):
    history, _ = run(
        cifar10, train_subset=4000, test_subset=1000, epochs=3, lr=2e-3, batch_size=128
    )
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["test_acc"] > 0.25  # chance is 0.10
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for h in history:
        assert 0 <= h["test_ece"] <= 1 and h["test_brier"] > 0 and h["params"] > 0
        assert math.isnan(h["val_acc"])  # no validation split asked for


def test_same_seed_same_metrics_and_different_seed_differs(cifar10):
    a, _ = run(cifar10, seed=3)
    b, _ = run(cifar10, seed=3)
    c, _ = run(cifar10, seed=4)
    keys = ["train_loss", "test_acc", "test_loss", "test_kl"]
    assert [a[0][k] for k in keys] == [b[0][k] for k in keys]
    assert a[0]["train_loss"] != c[0]["train_loss"]


@pytest.mark.parametrize("optimizer", ["sgd", "ivon"])
def test_resume_from_checkpoint_equals_an_uninterrupted_run(cifar10, optimizer):
    full, _ = run(cifar10, epochs=2, optimizer=optimizer, lr=0.05)
    _, states = run(cifar10, epochs=2, optimizer=optimizer, lr=0.05)
    cfg = TrialConfig.from_dict({**SMALL, "epochs": 2, "optimizer": optimizer, "lr": 0.05})
    resumed = train(cfg, data=cifar10, resume_state=states[0])
    assert [h["epoch"] for h in resumed] == [2]  # epoch 1 is not trained again
    for k in ("train_loss", "test_loss", "test_acc"):
        assert resumed[0][k] == pytest.approx(full[1][k], rel=1e-5, abs=1e-6)


def test_cosine_schedule_anneals_to_zero_at_the_last_step_resumed_or_not(data):
    """The learn preset's schedule: per step over all of the trial's epochs, 0 after its last
    step (current_lr is read after each epoch's last step); a trial resumed from a checkpoint
    continues the same schedule (the scheduler's state holds its total steps)."""
    changes = dict(epochs=3, optimizer="sgd", lr=0.05, schedule="cosine")
    changes |= dict(train_subset=None, test_subset=None, num_threads=1)  # the tiny bundle: 80, 40
    full, states = run(data, **changes)
    steps = 2  # per epoch: 80 images in batches of 64
    lrs = [h["current_lr"] for h in full]
    for epoch, lr in enumerate(lrs[:-1], start=1):
        t = epoch * steps / (3 * steps)
        assert lr == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * t)))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    cfg = TrialConfig.from_dict({**SMALL, **changes})
    resumed = train(cfg, data=data, resume_state=states[0])
    assert [h["current_lr"] for h in resumed] == pytest.approx(lrs[1:], abs=1e-12)
    assert resumed[-1]["test_loss"] == pytest.approx(full[-1]["test_loss"], rel=1e-5)


def test_adam_sgd_ivon_give_different_weights_from_one_seed(cifar10):
    weights = {}
    for opt in ("adam", "sgd", "ivon"):
        history, states = run(cifar10, optimizer=opt, lr=0.01)
        assert math.isfinite(history[0]["train_loss"])
        weights[opt] = torch.cat([v.flatten().float() for v in states[-1]["model"].values()])
        assert states[-1]["config"]["optimizer"] == opt
    assert not torch.equal(weights["adam"], weights["sgd"])
    assert not torch.equal(weights["adam"], weights["ivon"])
    assert not torch.equal(weights["sgd"], weights["ivon"])


def test_batch_size_does_not_depend_on_ensemble_size(cifar10):
    # 200 images in batches of 64: 64, 64, 64, 8 -> 50 images per batch whatever M is.
    per_batch = []
    for m in (2, 4, 8):
        history, _ = run(cifar10, ensemble_size=m)
        per_batch.append(history[0]["images_per_s"] / history[0]["batches_per_s"])
    assert per_batch == pytest.approx([50.0] * 3)


def test_divergence_ends_the_trial_cleanly(cifar10):
    history, states = run(cifar10, optimizer="sgd", lr=1e12, epochs=3, norm="none")
    assert history[-1]["diverged"] is True
    assert len(history) < 3 or math.isnan(history[-1]["train_loss"])
    assert math.isnan(history[-1]["train_loss"]) and math.isnan(history[-1]["test_acc"])
    assert states[-1] is None  # nothing worth resuming from is checkpointed


def test_early_stopping_on_validation_loss(cifar10):
    # Adam with a vanishing step changes no weight: the validation loss cannot improve after
    # epoch 1, so patience 1 stops the trial at epoch 2 of 5.
    history, _ = run(cifar10, lr=1e-20, epochs=5, patience=1, val_fraction=0.2, norm="none")
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["early_stopped"] is True and history[0]["early_stopped"] is False
    assert not math.isnan(history[-1]["val_loss"])


def test_time_train_steps_runs_as_the_trial_does(data):
    cfg = TrialConfig.from_dict({**TINY, "precision": "bf16", "channels_last": "on"})
    out = time_train_steps(cfg, data, steps=2, warmup=1)
    assert all(v > 0 for v in out.values())
