"""core.cost: training FLOPs per image counted from the model, and peak memory."""

from __future__ import annotations

import torch

from core.config import TrialConfig
from core.cost import peak_memory_mb, train_flops_per_image
from core.models import model_for_config

SHAPE = (3, 32, 32)


def flops(**kw) -> float:
    cfg = TrialConfig(arch="simple_cnn", **kw)
    return train_flops_per_image(model_for_config(cfg, 10, 3), cfg, SHAPE, 10)


def test_a_single_network_costs_three_forward_passes_but_the_first_input_gradient():
    """Forward 2 FLOPs per multiply-add; backward the weight gradient of every layer and the
    input gradient of every layer but the first (the images need none)."""
    cfg = TrialConfig(arch="simple_cnn", ensemble="single", ensemble_size=1)
    model = model_for_config(cfg, 10, 3)
    fwd = 0
    first = None
    x = torch.zeros(1, *SHAPE)
    hooks = []

    def count(mod, inp, out):
        nonlocal fwd, first
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            f = 2 * out.shape[2] * out.shape[3] * mod.out_channels * mod.in_channels * k
        else:
            f = 2 * mod.in_features * mod.out_features
        first = f if first is None else first
        fwd += f

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            hooks.append(m.register_forward_hook(count))
    model.eval()
    model(x)
    assert flops(ensemble="single", ensemble_size=1) == 3 * fwd - first


def test_a_deep_ensemble_costs_m_networks_and_sharing_an_early_region_saves():
    single = flops(ensemble="single", ensemble_size=1)
    # grouped convolutions: torch's own backward formula would count 4x too much here
    assert flops(ensemble="deep", ensemble_size=4) == 4 * single
    be4 = flops(ensemble="batch", ensemble_size=4)
    assert 4 * single <= be4 < 4.1 * single  # fast weights are elementwise: not counted
    shared = flops(ensemble="batch", ensemble_size=4, sharing_ensemble="early")
    assert shared < 0.7 * be4  # the early region runs once on the untiled batch
    assert flops(optimizer="ivon", lr=0.1, ivon_train_samples=3) == 3 * flops(
        optimizer="ivon", lr=0.1
    )


def test_counting_leaves_the_trial_model_untouched():
    cfg = TrialConfig(arch="simple_cnn", ensemble="batch", ensemble_size=2)
    model = model_for_config(cfg, 10, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_flops_per_image(model, cfg, SHAPE, 10)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_peak_memory_is_the_process_peak_on_cpu():
    before = peak_memory_mb(torch.device("cpu"))
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB
    assert peak_memory_mb(torch.device("cpu")) >= max(before, 64)
    del block
