"""The robustness evaluation of a trial (core.evaluate.Robustness) on real CIFAR-10 images."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from core import columns as C
from core.config import TrialConfig
from core.cost import train_flops_per_image
from core.data import FASHION_MNIST_DIR
from core.data.ood import FASHION_MNIST_TEST
from core.models import model_for_config
from core.train import train

# the smoke preset's trial (tune_jobs.options.SMOKE)
SMOKE = dict(
    dataset="cifar10",
    arch="simple_cnn",
    train_subset=500,
    test_subset=250,
    epochs=2,
    corruption_subset=10,
    ood_subset=100,
    num_threads=2,
    device="cpu",
)


@pytest.fixture(scope="module")
def ood_config(tmp_path_factory) -> dict:
    """Fashion-MNIST when Debian's package is installed, else a tiny folder of images."""
    if (FASHION_MNIST_DIR / FASHION_MNIST_TEST).is_file():
        return {"ood_dataset": "fashion_mnist"}
    folder = tmp_path_factory.mktemp("ood")
    for i in range(40):
        Image.new("RGB", (32, 32), ((37 * i) % 256, (91 * i) % 256, 128)).save(folder / f"{i}.png")
    return {"ood_dataset": "imagefolder", "ood_dir": str(folder)}


def test_a_smoke_trial_reports_every_robustness_key_at_its_end(cifar10, ood_config):
    on = train(TrialConfig.from_dict({**SMOKE, **ood_config}), data=cifar10)
    off = train(TrialConfig.from_dict({**SMOKE, "robustness": False}), data=cifar10)
    first, last = on
    assert all(math.isnan(first[k]) for k in C.ROBUSTNESS_KEYS)  # end only
    assert all(math.isfinite(last[k]) for k in C.ROBUSTNESS_KEYS), [
        k for k in C.ROBUSTNESS_KEYS if not math.isfinite(last[k])
    ]
    for k in C.CORRUPT_KEYS:
        cells = [last[C.corrupt_metric(k, c, s)] for c in C.CORRUPTIONS for s in C.SEVERITIES]
        assert last[C.corrupt_metric(k)] == pytest.approx(sum(cells) / len(cells))
    for c in C.CORRUPTIONS:  # 10 images per cell: accuracies are tenths
        acc = last[C.corrupt_metric("acc", c, 1)]
        assert abs(acc * 10 - round(acc * 10)) < 1e-9
    for m in C.OOD_METRICS:
        assert 0.0 <= last[m] <= 1.0
    # the clean test set is untouched: the same metrics with robustness off
    for k in C.TEST_METRICS:
        assert last[k] == off[-1][k]
    assert all(math.isnan(off[-1][k]) for k in C.ROBUSTNESS_KEYS)
    cost = last[C.ROBUSTNESS_S] / (off[0][C.EPOCH_S] + off[1][C.EPOCH_S])
    # printed, not asserted (benchmarks/robustness_cost.py measures the ratio)
    print(f"robustness_s {last[C.ROBUSTNESS_S]:.2f} s = {cost:.0%} of the trial's epochs")


def test_missing_ood_data_is_a_notice_and_nan_metrics(cifar10, tmp_path, capsys):
    cfg = TrialConfig.from_dict(
        {**SMOKE, "epochs": 1, "ood_dir": str(tmp_path / "none"), "robustness_every": 1}
    )
    (last,) = train(cfg, data=cifar10)
    err = capsys.readouterr().err
    assert "notice: no OOD metrics" in err and "dataset-fashion-mnist" in err
    assert all(math.isnan(last[m]) for m in C.OOD_METRICS)
    assert math.isfinite(last[C.corrupt_metric("acc")])


def test_single_network_has_no_mutual_information(cifar10, ood_config):
    cfg = {**SMOKE, **ood_config, "ensemble": "single", "ensemble_size": 1, "epochs": 1}
    (last,) = train(TrialConfig.from_dict(cfg), data=cifar10)
    assert math.isnan(last[C.ood_metric("auroc", "mi")])
    assert math.isfinite(last[C.ood_metric("auroc", "msp")])


def test_robustness_is_also_measured_at_the_given_epochs(cifar10, ood_config):
    """A study's ASHA rungs (`robustness_epochs`): measured there and at the end, not between,
    so that a trial stopped at a rung has its robustness from that epoch."""
    cfg = TrialConfig.from_dict({**SMOKE, **ood_config, "epochs": 3, "train_subset": 200})
    history = train(cfg, data=cifar10, robustness_epochs=(1,))
    measured = [math.isfinite(h[C.corrupt_metric("acc")]) for h in history]
    assert measured == [True, False, True]
    assert [math.isfinite(h[C.ROBUSTNESS_S]) for h in history] == measured
    # The cost columns of every epoch (core.cost): FLOPs counted once, FLOP/s from images/s.
    model = model_for_config(cfg, 10, 3)
    flops = train_flops_per_image(model, cfg, (3, 32, 32), 10)
    for h in history:
        assert h[C.TRAIN_FLOPS_PER_IMAGE] == flops
        assert h[C.FLOP_PER_S] == pytest.approx(flops * h[C.IMAGES_PER_S], rel=1e-6)
        assert h[C.PEAK_MEMORY_MB] > 0
