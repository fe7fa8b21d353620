"""MIMO (core.layers.mimo, ensemble 'mimo'): the first conv against M separate input slices
(the paper's definition), the heads member-major, the training batch's statistics, parameters
and FLOPs against the formulas, a training step, and the refusals."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from core.architectures import ARCHITECTURES, Conv
from core.config import ConfigError, TrialConfig
from core.cost import train_flops_per_image
from core.layers import MIMOConv2d, mimo_align, mimo_batch, mimo_rows
from core.metrics import LOSS_CONVENTIONS, ensemble_loss
from core.models import build_model, count_parameters, model_for_config
from core.optim import build_optimizer, train_step
from core.spec import ModelSpec, check_model
from core.train import _train_loader

D = torch.float64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------------------------
# the first conv against M separate input slices
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,stride,padding,bias", [(4, 1, 1, True), (3, 2, 0, False)])
def test_first_conv_is_the_sum_of_per_member_convolutions(m, stride, padding, bias):
    """conv2d([x_1..x_M], W) + b = sum_m conv2d(x_m, W[:, m C:(m+1) C]) + b: outputs and the
    gradients of the inputs, the weight and the bias (float64)."""
    layer = MIMOConv2d(3, 5, 3, m, stride=stride, padding=padding, bias=bias).to(D)
    assert layer.conv.weight.shape == (5, 3 * m, 3, 3)
    xs = torch.randn(m, 2, 3, 7, 7, dtype=D, requires_grad=True)
    w = layer.conv.weight.detach().clone().requires_grad_(True)
    b = layer.conv.bias.detach().clone().requires_grad_(True) if bias else None
    xr = xs.detach().clone().requires_grad_(True)
    ref = sum(F.conv2d(xr[j], w[:, 3 * j : 3 * (j + 1)], None, stride, padding) for j in range(m))
    ref = ref + (b.view(1, -1, 1, 1) if bias else 0)
    out = layer(xs)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(xs.grad, xr.grad)
    torch.testing.assert_close(layer.conv.weight.grad, w.grad)
    if bias:
        torch.testing.assert_close(layer.conv.bias.grad, b.grad)


def test_one_image_for_all_members_is_the_image_repeated():
    """At test time the image is every member's input: (B, C, H, W) gives the same as M copies
    stacked (computed as one conv with the summed weight)."""
    layer = MIMOConv2d(3, 4, 3, 4, padding=1).to(D)
    x = torch.randn(2, 3, 6, 6, dtype=D)
    torch.testing.assert_close(layer(x), layer(x.expand(4, *x.shape)))
    with pytest.raises(ConfigError, match=r"expected images \(B, 3, H, W\) or one input per"):
        layer(torch.randn(3, 2, 3, 6, 6))


@pytest.mark.parametrize("train", [False, True])
def test_heads_are_member_major(train):
    """logits[m] = head m (rows m K .. (m+1) K - 1 of the classifier) of the one body's
    features of the M stacked inputs: the (M, B, K) layout the metrics read."""
    m, k = 3, 10
    net = build_model("simple_cnn", k, ensemble="mimo", ensemble_size=m).to(D).train(train)
    xs = torch.randn(m, 4, 3, 16, 16, dtype=D)
    out = net(xs)
    assert out.shape == (m, 4, k)
    h = xs
    for name, block in net.blocks.items():
        if name == "fc":
            feats = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
            lin = block.linear.linear
        else:
            h = block(h)
    for j in range(m):
        ref = F.linear(feats, lin.weight[j * k : (j + 1) * k], lin.bias[j * k : (j + 1) * k])
        torch.testing.assert_close(out[j], ref)


# ----------------------------------------------------------------------------------------------
# the training batch
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_training_rows_repeat_each_image_and_share_a_fraction_rho(rho):
    """Every member's rows hold each of the B images exactly b times; the share of rows on
    which all M members see the same image is rho (plus chance coincidences, ~B^-(M-1))."""
    m, b, rep = 4, 64, 4
    shares = []
    for _ in range(20):
        rows = mimo_rows(b, m, rho, rep)
        assert rows.shape == (m, rep * b)
        counts = torch.stack([torch.bincount(r, minlength=b) for r in rows])
        assert (counts == rep).all()
        shares.append((rows == rows[0]).all(0).float().mean().item())
    share = sum(shares) / len(shares)
    assert rho <= share < rho + 0.01
    if rho == 0.0:  # independent shuffles: members differ on (almost) every row
        assert share < 0.01


def test_labels_follow_each_members_rows_and_logits_align_back():
    x = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 3, 8, 8)
    y = torch.arange(6)
    xs, ys, rows = mimo_batch(x, y, 3, 0.0, 2)
    assert xs.shape == (3, 12, 3, 8, 8) and ys.shape == (3, 12)
    assert torch.equal(xs[:, :, 0, 0, 0].long(), ys) and torch.equal(ys, rows)
    logits = rows.unsqueeze(-1).float().expand(3, 12, 5)  # a row's logits name its image
    aligned = mimo_align(logits, rows, 6)
    assert aligned.shape == (3, 6, 5)
    assert torch.equal(aligned[..., 0], torch.arange(6.0).expand(3, 6))


def test_the_loss_scores_each_member_on_its_own_labels():
    logits, y = torch.randn(3, 5, 4), torch.randint(0, 4, (3, 5))
    ref = sum(F.cross_entropy(logits[j], y[j]) for j in range(3))
    torch.testing.assert_close(ensemble_loss(logits, y, "mimo"), ref)
    assert LOSS_CONVENTIONS["mimo"] == "sum"


# ----------------------------------------------------------------------------------------------
# parameters and FLOPs against the formulas
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["simple_cnn", "vgg11", "vgg11_share"])
@pytest.mark.parametrize("m", [2, 4])
def test_parameter_counts_follow_the_formula(arch, m):
    """params = single + (M - 1) (C C_1 k^2 + F K + K): only the first conv's input channels
    and the heads grow with M."""
    first, fc = ARCHITECTURES[arch].layers[0], ARCHITECTURES[arch].layers[-1]
    single = count_parameters(build_model(arch, 10, ensemble="single", ensemble_size=1))
    extra = first.in_channels * first.out_channels * first.kernel_size**2
    extra += fc.in_features * 10 + 10
    net = build_model(arch, 10, ensemble="mimo", ensemble_size=m)
    assert count_parameters(net) == single + (m - 1) * extra


def _flops(**kw) -> float:
    cfg = TrialConfig(arch="simple_cnn", **kw)
    return train_flops_per_image(model_for_config(cfg, 10, 3), cfg, (3, 32, 32), 10)


def test_a_training_image_costs_b_networks():
    """Training FLOPs per loader image: b rows of one network, whose first layer takes M
    times the channels (forward only: no input gradient) and whose classifier M heads."""
    lay, fc = ARCHITECTURES["simple_cnn"].layers[0], ARCHITECTURES["simple_cnn"].layers[-1]
    assert isinstance(lay, Conv)
    size = 32 // lay.stride
    first_fwd = 2 * lay.in_channels * lay.out_channels * lay.kernel_size**2 * size * size
    head = 2 * fc.in_features * 10
    single = _flops(ensemble="single", ensemble_size=1)
    for rep in (1, 4):
        mimo = _flops(ensemble="mimo", ensemble_size=4, mimo_batch_repeat=rep)
        # the first conv: forward + weight gradient, 2 * 3 extra; the heads 3 * 3 extra
        assert mimo == rep * (single + 3 * 2 * first_fwd + 3 * 3 * head)
    assert 1.0 < _flops(ensemble="mimo", ensemble_size=4, mimo_batch_repeat=1) / single < 1.2


def test_the_loader_batch_is_divided_by_the_repetitions(data):
    cfg = TrialConfig(arch="simple_cnn", ensemble="mimo", ensemble_size=4, batch_size=32)
    assert _train_loader(cfg, data, torch.device("cpu")).batch_size == 8


def test_a_mimo_model_trains_a_step():
    cfg = TrialConfig(arch="simple_cnn", ensemble="mimo", ensemble_size=3, mimo_rho=0.25)
    net = model_for_config(cfg, 10, 3)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    opt, sched = build_optimizer(net, cfg, num_train=8, steps_per_epoch=1)
    w = net.blocks["conv1"].conv.conv.weight.detach().clone()
    loss, logits = train_step(net, opt, x, y, cfg, sched)
    assert math.isfinite(loss) and logits.shape == (3, 8, 10)
    assert not torch.equal(net.blocks["conv1"].conv.conv.weight, w)


# ----------------------------------------------------------------------------------------------
# refusals
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(sharing_network="deep"), r"sharing_network='deep': a MIMO network's members"),
        (dict(sharing_ensemble="early"), r"sharing_ensemble='early': a MIMO network's members"),
        (dict(norm="member"), r"norm='member': per-member statistics are an option of the 'batch'"),
        (dict(ensemble_size=1), r"ensemble 'mimo' needs at least 2 members"),
        (dict(mimo_rho=1.0), r"mimo_rho=1.0: must be in \[0.0, 1.0\)"),
        (dict(mimo_batch_repeat=0), r"mimo_batch_repeat=0: must be an integer in \[1, 64\]"),
        (dict(packed_width=3.0), r"packed_width=3.0: it is an option of ensemble 'packed' only"),
        (
            dict(ensemble="batch", mimo_rho=0.5),
            r"mimo_rho=0.5: it is an option of ensemble 'mimo' only, not of 'batch'",
        ),
        (
            dict(ensemble="packed", mimo_batch_repeat=2),
            r"mimo_batch_repeat=2: it is an option of ensemble 'mimo' only, not of 'packed'",
        ),
    ],
)
def test_mimo_refuses_combinations_that_make_no_sense(kwargs, match):
    spec = dataclasses.replace(ModelSpec(arch="vgg11_share", ensemble="mimo"), **kwargs)
    with pytest.raises(ConfigError, match=match):
        check_model(spec)
    with pytest.raises(ConfigError, match=match):
        TrialConfig(**{"arch": "vgg11_share", "ensemble": "mimo", **kwargs}).validate()


def test_the_command_line_refuses_mimo_with_tied_layers_in_one_line():
    args = ["--arch", "simple_cnn", "--ensemble", "mimo", "--sharing-network", "deep"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    r = subprocess.run(
        [sys.executable, "-m", "core.train", *args], capture_output=True, text=True, env=env
    )
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith("error: sharing_network='deep': a MIMO network's members")
