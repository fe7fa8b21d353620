"""Packed-Ensembles (core.layers.packed, ensemble 'packed'): the layers against float64 loops
written from the paper's definition, a packed network against M narrow networks, parameters and
FLOPs against the formulas, and the refusals."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from core.architectures import ARCHITECTURES, ArchSpec, Conv
from core.config import ConfigError, TrialConfig
from core.cost import train_flops_per_image
from core.layers import PackedConv2d, PackedLinear, packed_channels
from core.metrics import LOSS_CONVENTIONS
from core.models import build_model, count_parameters, model_for_config
from core.optim import build_optimizer, train_step
from core.spec import ModelSpec, check_model

D = torch.float64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------------------------
# the layers against a loop of M * gamma small convolutions
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "m,gamma,width,stride,padding", [(4, 1, 2.0, 1, 1), (2, 2, 2.0, 2, 0), (3, 1, 1.0, 1, 1)]
)
def test_packed_conv_is_a_loop_of_group_convolutions(m, gamma, width, stride, padding):
    """y[:, block g] = conv2d(x[:, block g], W[block g], b[block g]) for the G = M * gamma
    groups, outputs and the gradients of input, weight and bias (float64)."""
    layer = PackedConv2d(
        6, 5, 3, m, width=width, subgroups=gamma, stride=stride, padding=padding
    ).to(D)
    g = m * gamma
    c_in, c_out = packed_channels(6, width, g), packed_channels(5, width, g)
    assert (layer.actual_in, layer.actual_out) == (c_in, c_out)
    assert c_in % g == 0 and c_out % g == 0 and c_out >= width * 5
    x = torch.randn(2, c_in, 7, 7, dtype=D, requires_grad=True)
    w = layer.conv.weight.detach().clone().requires_grad_(True)
    b = layer.conv.bias.detach().clone().requires_grad_(True)
    xr = x.detach().clone().requires_grad_(True)
    i, o = c_in // g, c_out // g
    ref = torch.cat(
        [
            F.conv2d(
                xr[:, j * i : (j + 1) * i],
                w[j * o : (j + 1) * o],
                b[j * o : (j + 1) * o],
                stride,
                padding,
            )
            for j in range(g)
        ],
        dim=1,
    )
    y = layer(x)
    torch.testing.assert_close(y, ref)
    dy = torch.randn_like(y)
    y.backward(dy)
    ref.backward(dy)
    torch.testing.assert_close(x.grad, xr.grad)
    torch.testing.assert_close(layer.conv.weight.grad, w.grad)
    torch.testing.assert_close(layer.conv.bias.grad, b.grad)


def test_the_first_layer_is_ungrouped_and_block_m_is_member_m_on_the_image():
    m = 4
    layer = PackedConv2d(3, 8, 3, m, width=2.0, padding=1, first=True).to(D)
    assert layer.conv.groups == 1 and layer.actual_in == 3 and layer.actual_out == 16
    assert count_parameters(layer) == 3 * 16 * 9 + 16
    x = torch.randn(2, 3, 6, 6, dtype=D)
    y = layer(x)
    w, b = layer.conv.weight, layer.conv.bias
    for j in range(m):
        s = slice(j * 4, (j + 1) * 4)
        torch.testing.assert_close(y[:, s], F.conv2d(x, w[s], b[s], padding=1))


def test_packed_linear_is_m_member_linears():
    m, k = 3, 5
    layer = PackedLinear(8, k, m, width=1.5, subgroups=2).to(D)
    c = packed_channels(8, 1.5, 6)  # 12
    assert layer.actual_in == c == 12
    assert count_parameters(layer) == c * k + m * k  # (C'/M) * K weights and K biases a member
    x = torch.randn(4, c, dtype=D)
    y = layer(x)
    w, b = layer.conv.weight.squeeze(-1), layer.conv.bias
    per = c // m
    for j in range(m):
        ref = F.linear(
            x[:, j * per : (j + 1) * per], w[j * k : (j + 1) * k], b[j * k : (j + 1) * k]
        )
        torch.testing.assert_close(y[:, j * k : (j + 1) * k], ref)


def test_channels_round_up_to_a_multiple_of_the_groups():
    assert packed_channels(16, 2.0, 4) == 32
    assert packed_channels(16, 1.0, 3) == 18  # 16 -> 18: 3 members of 6
    assert packed_channels(10, 1.5, 4) == 16  # 15 -> 16
    net = build_model("simple_cnn", 10, ensemble="packed", ensemble_size=3, packed_width=1.0)
    assert net(torch.randn(2, 3, 32, 32)).shape == (3, 2, 10)


@pytest.mark.parametrize(
    "layer,x,match",
    [
        (
            lambda: PackedConv2d(4, 4, 3, 2),
            torch.zeros(1, 4, 5, 5),
            r"expected input \(B, 8, H, W\)",
        ),
        (lambda: PackedLinear(4, 3, 2), torch.zeros(2, 4), r"expected input \(B, 8\)"),
    ],
)
def test_layers_refuse_an_input_of_the_wrong_width(layer, x, match):
    with pytest.raises(ConfigError, match=match):
        layer()(x)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(width=0.5), r"packed_width=0.5: must be in \[1.0, inf\]"),
        (dict(subgroups=0), r"packed_groups=0: must be an integer >= 1"),
    ],
)
def test_layers_refuse_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PackedConv2d(4, 4, 3, 2, **kwargs)


# ----------------------------------------------------------------------------------------------
# a packed network is M narrow networks
# ----------------------------------------------------------------------------------------------
def _narrow(arch: ArchSpec, factor: float) -> ArchSpec:
    """The table with every conv's channels times `factor` (the image channels kept)."""
    layers = []
    for lay in arch.layers:
        if isinstance(lay, Conv):
            c_in = lay.in_channels if lay is arch.layers[0] else int(lay.in_channels * factor)
            lay = dataclasses.replace(
                lay, in_channels=c_in, out_channels=int(lay.out_channels * factor)
            )
        else:
            lay = dataclasses.replace(lay, in_features=int(lay.in_features * factor))
        layers.append(lay)
    return dataclasses.replace(arch, name="narrow", layers=tuple(layers), tie_variant=None)


def _copy_member(packed, narrow, j: int, m: int) -> None:
    """Member j of the packed network into the narrow single network, slice by slice."""
    for name, block in narrow.blocks.items():
        src = packed.blocks[name]
        if hasattr(block, "conv"):
            o = block.conv.out_channels
            s = slice(j * o, (j + 1) * o)
            block.conv.weight.data.copy_(src.conv.conv.weight[s])
            for attr in ("weight", "bias", "running_mean", "running_var"):
                getattr(block.norm, attr).data.copy_(getattr(src.norm, attr)[s])
        else:
            k = block.linear.out_features
            s = slice(j * k, (j + 1) * k)
            block.linear.weight.data.copy_(src.linear.conv.weight[s].squeeze(-1))
            block.linear.bias.data.copy_(src.linear.conv.bias[s])


@pytest.mark.parametrize("train", [True, False])
def test_a_packed_simple_cnn_is_m_narrow_simple_cnns(monkeypatch, train):
    """gamma = 1, alpha = 2, M = 4: member m of the packed network is a simple_cnn of width
    alpha / M = 1/2, computed alone with member m's slices of every parameter (float64; in
    training mode BatchNorm's batch statistics are per channel, so per member)."""
    m = 4
    monkeypatch.setitem(ARCHITECTURES, "narrow", _narrow(ARCHITECTURES["simple_cnn"], 2.0 / m))
    packed = build_model("simple_cnn", 10, ensemble="packed", ensemble_size=m).to(D)
    for mod in packed.modules():  # running statistics away from their init
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 1.5)
    x = torch.randn(3, 3, 32, 32, dtype=D)
    packed.train(train)
    y = packed(x)
    assert y.shape == (m, 3, 10)
    for j in range(m):
        narrow = build_model("narrow", 10, ensemble="single", ensemble_size=1).to(D)
        _copy_member(packed, narrow, j, m)
        narrow.train(train)
        torch.testing.assert_close(y[j], narrow(x)[0])


# ----------------------------------------------------------------------------------------------
# parameters and FLOPs against the formulas
# ----------------------------------------------------------------------------------------------
def _formula_params(arch: str, m: int, width: float, gamma: int, k: int) -> int:
    """first conv C_img * C'_out * k^2; other convs C'_in * C'_out * k^2 / (M gamma); a
    BatchNorm 2 C'; the classifier C'_last * K + M * K (convs bias-free before a norm)."""
    g, total = m * gamma, 0
    for i, lay in enumerate(ARCHITECTURES[arch].layers):
        if isinstance(lay, Conv):
            c_out = packed_channels(lay.out_channels, width, g)
            kk = lay.kernel_size**2
            if i == 0:
                total += lay.in_channels * c_out * kk
            else:
                total += packed_channels(lay.in_channels, width, g) * c_out * kk // g
            total += 2 * c_out
        else:
            total += packed_channels(lay.in_features, width, g) * k + m * k
    return total


@pytest.mark.parametrize("arch", ["simple_cnn", "vgg11", "vgg11_share"])
@pytest.mark.parametrize("m,width,gamma", [(4, 2.0, 1), (4, 2.0, 2), (2, 3.0, 1)])
def test_parameter_counts_follow_the_formula(arch, m, width, gamma):
    net = build_model(
        arch, 10, ensemble="packed", ensemble_size=m, packed_width=width, packed_groups=gamma
    )
    assert count_parameters(net) == _formula_params(arch, m, width, gamma, 10)


def test_packed_alpha2_m4_costs_about_one_network():
    """Training FLOPs per image, simple_cnn at 32x32, alpha = 2, M = 4, gamma = 1.

    A conv of H_out * W_out outputs costs 2 * (weights) * H_out * W_out forward (a multiply-add
    is 2 FLOPs) and twice that backward (input and weight gradients), the first layer's input
    gradient excepted: train = 3 fwd - fwd(first). Packed weights (module docstring of
    core.layers.packed): first 3 * alpha C_1 k^2 = alpha * single's; the others
    alpha^2 C_in C_out k^2 / (M gamma) = single's (alpha^2 / M = 1); classifier
    alpha C K = alpha * single's. So packed = single + (alpha - 1) * (first + classifier),
    a little over one network, against M = 4 networks for the deep ensemble.
    """
    arch = ARCHITECTURES["simple_cnn"]
    fwd_first = fwd_rest = 0
    size = 32
    for i, lay in enumerate(arch.layers):
        if isinstance(lay, Conv):
            size //= lay.stride
            f = 2 * lay.in_channels * lay.out_channels * lay.kernel_size**2 * size * size
            fwd_first, fwd_rest = (f, fwd_rest) if i == 0 else (fwd_first, fwd_rest + f)
            size //= 2 if lay.pool else 1
        else:
            fwd_rest += 2 * lay.in_features * 10
            fc = 2 * lay.in_features * 10
    single = 2 * fwd_first + 3 * fwd_rest
    alpha = 2
    packed = alpha * 2 * fwd_first + 3 * (fwd_rest + (alpha - 1) * fc)

    def flops(**kw) -> float:
        cfg = TrialConfig(arch="simple_cnn", **kw)
        return train_flops_per_image(model_for_config(cfg, 10, 3), cfg, (3, 32, 32), 10)

    assert flops(ensemble="single", ensemble_size=1) == single
    assert flops(ensemble="packed", ensemble_size=4) == packed
    assert 1.0 < packed / single < 1.1


# ----------------------------------------------------------------------------------------------
# refusals
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(sharing_network="deep"), r"sharing_network='deep': a packed ensemble's layers"),
        (dict(sharing_ensemble="early"), r"sharing_ensemble='early': a packed ensemble's layers"),
        (dict(norm="member"), r"norm='member': per-member statistics are an option of the 'batch'"),
        (dict(ensemble_size=1), r"ensemble 'packed' needs at least 2 members"),
        (dict(packed_width=0.5), r"packed_width=0.5: must be in \[1.0, inf\]"),
        (dict(packed_width=float("nan")), r"packed_width=nan: must be a number"),
        (dict(packed_groups=1.5), r"packed_groups=1.5: must be an integer in \[1, 64\]"),
        (
            dict(ensemble="batch", packed_width=3.0),
            r"packed_width=3.0: it is an option of ensemble 'packed' only, not of 'batch'",
        ),
        (
            dict(ensemble="deep", packed_groups=2),
            r"packed_groups=2: it is an option of ensemble 'packed' only, not of 'deep'",
        ),
    ],
)
def test_packed_refuses_combinations_that_make_no_sense(kwargs, match):
    spec = dataclasses.replace(ModelSpec(arch="vgg11_share", ensemble="packed"), **kwargs)
    with pytest.raises(ConfigError, match=match):
        check_model(spec)
    with pytest.raises(ConfigError, match=match):
        TrialConfig(**{"arch": "vgg11_share", "ensemble": "packed", **kwargs}).validate()


def test_a_config_carries_the_packed_settings_to_the_model():
    cfg = TrialConfig.from_dict(
        {"arch": "simple_cnn", "ensemble": "packed", "packed_width": 3.0, "packed_groups": 2}
    )
    assert (cfg.model.packed_width, cfg.model.packed_groups) == (3.0, 2)
    net = model_for_config(cfg, 10, 3)
    assert net.blocks["conv2"].conv.conv.groups == 8
    assert LOSS_CONVENTIONS["packed"] == "sum"  # independent members, like 'deep'


def test_a_packed_model_trains_a_step_and_ignores_deep_impl():
    """A packed trunk is channel-stacked like a deep one, but `deep_impl='loop'` (a deep
    ensemble's member list) never applies to it: same output either way."""
    cfg = TrialConfig(arch="simple_cnn", ensemble="packed", ensemble_size=4, optimizer="sgd")
    net = model_for_config(cfg, 10, 3)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    net.eval()
    before = net(x)
    net.deep_impl = "loop"
    torch.testing.assert_close(net(x), before)
    net.train()
    opt, sched = build_optimizer(net, cfg, num_train=8, steps_per_epoch=1)
    w = net.blocks["conv2"].conv.conv.weight.detach().clone()
    loss, logits = train_step(net, opt, x, y, cfg, sched)
    assert math.isfinite(loss) and logits.shape == (4, 8, 10)
    assert not torch.equal(net.blocks["conv2"].conv.conv.weight, w)
