"""A trial on CUDA, with what `auto` resolves to there (bf16, channels_last, compile): run by
benchmarks/gpu.sh (`pytest -m cuda`); skipped on machines without CUDA, such as CI's."""

from __future__ import annotations

import math

import pytest
import torch

from core import columns as C
from core.config import TrialConfig
from core.runtime import capabilities
from core.train import train
from tests.core.test_runtime import METRICS, TINY

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("ensemble", ["single", "batch", "deep"])
def test_a_trial_trains_on_cuda_under_auto_and_under_fp32(data, ensemble):
    size = 1 if ensemble == "single" else 4
    base = {**TINY, "device": "cuda", "ensemble": ensemble, "ensemble_size": size, "epochs": 2}
    base["robustness"] = False
    auto = train(TrialConfig.from_dict(base), data=data)
    fp32 = train(
        TrialConfig.from_dict(
            {**base, "precision": "fp32", "channels_last": "off", "compile": "off"}
        ),
        data=data,
    )
    for h in (*auto, *fp32):
        assert all(math.isfinite(h[k]) for k in METRICS)
        assert h[C.PEAK_MEMORY_MB] > 0 and h[C.FLOP_PER_S] > 0
        assert h[C.RESOLVED_DEVICE] == "cuda"
        assert h[C.DEVICE_NAME] == f"{torch.cuda.get_device_name()} x{torch.cuda.device_count()}"
    # what auto resolved to on this GPU, as each epoch reports it
    caps = capabilities(torch.device("cuda"))
    assert auto[0][C.RESOLVED_PRECISION] == ("bf16" if caps.bf16 else "fp32")
    assert auto[0][C.RESOLVED_CHANNELS_LAST] is True
    assert auto[0][C.RESOLVED_COMPILE] is (caps.no_compile is None)
    assert fp32[0][C.RESOLVED_PRECISION] == "fp32" and fp32[0][C.RESOLVED_COMPILE] is False
    # bf16 and fp32 learn alike on the same data order
    assert auto[-1][C.TRAIN_LOSS] == pytest.approx(fp32[-1][C.TRAIN_LOSS], rel=0.1)


def test_the_robustness_evaluation_runs_on_cuda(data):
    cfg = TrialConfig.from_dict(
        {
            **TINY,
            "device": "cuda",
            "robustness": True,
            "corruption_subset": 8,
            "ood_dataset": "none",
        }
    )
    (last,) = train(cfg, data=data)
    assert math.isfinite(last[C.corrupt_metric("acc")])
    assert torch.cuda.max_memory_allocated() > 0
