"""core.evaluate: a split's member probabilities and their metrics (tiny model, synthetic
images, on the CPU). The robustness evaluation: tests/core/test_robustness.py."""

from __future__ import annotations

import math

import torch

from core import columns as C
from core.config import TrialConfig
from core.evaluate import eval_loader, evaluate, predict, split_metrics
from core.metrics import evaluation_metrics
from core.models import model_for_config
from core.runtime import resolve_runtime
from tests.core.test_runtime import TINY

CPU = torch.device("cpu")


def setup(bundle):
    cfg = TrialConfig.from_dict(TINY)
    torch.manual_seed(0)
    model = model_for_config(cfg, bundle.num_classes, in_channels=3)
    loader = eval_loader(bundle.test_x, bundle.test_y, 16, bundle, CPU)
    return cfg, model, loader, resolve_runtime(cfg, CPU)


def test_predict_gives_every_members_fp32_probabilities_in_order(data):
    cfg, model, loader, runtime = setup(data)
    probs, labels = predict(model, None, loader, cfg, runtime)
    assert probs.shape == (2, 40, 4) and probs.dtype == torch.float32
    assert torch.allclose(probs.sum(-1), torch.ones(2, 40))
    assert torch.equal(labels, data.test_y)  # unshuffled, all of them
    assert not model.training
    again, _ = predict(model, None, loader, cfg)  # without a runtime: fp32 on the CPU
    if runtime.precision == "fp32":
        assert torch.equal(again, probs)
    else:  # auto is bf16 on a CPU with bf16 units: the same probabilities to bf16 rounding
        torch.testing.assert_close(again, probs, rtol=0, atol=1e-2)


def test_evaluate_scores_what_predict_gives(data):
    cfg, model, loader, runtime = setup(data)
    assert evaluate(model, None, loader, cfg, runtime) == evaluation_metrics(
        *predict(model, None, loader, cfg, runtime)
    )


def test_split_metrics_names_every_key_and_a_missing_split_is_nan(data):
    cfg, model, loader, runtime = setup(data)
    scores, predicted = split_metrics(model, None, {C.TEST: loader, C.VAL: None}, cfg, runtime)
    assert set(scores) == {C.split_metric(s, k) for s in (C.TEST, C.VAL) for k in C.EVAL_KEYS}
    expected = evaluate(model, None, loader, cfg, runtime)
    for k in C.EVAL_KEYS:
        assert scores[C.split_metric(C.TEST, k)] == float(expected[k])
        assert math.isnan(scores[C.split_metric(C.VAL, k)])
    assert list(predicted) == [C.TEST]  # the evaluated splits only
    for got, want in zip(
        predicted[C.TEST], predict(model, None, loader, cfg, runtime), strict=True
    ):
        assert torch.equal(got, want)
    nothing, none = split_metrics(model, None, {C.TEST: None, C.VAL: None}, cfg, runtime)
    assert none == {} and all(math.isnan(v) for v in nothing.values())
