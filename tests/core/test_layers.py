"""core.layers: BatchEnsemble / deep-ensemble layers, fast-weight init, ensemble norms."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.config import FAST_WEIGHT_SWEEP, ConfigError
from core.layers import (
    BEBatchNorm2d,
    BEConv2d,
    BELinear,
    DeepConv2d,
    DeepLinear,
    MemberBatchNorm2d,
    be_conv_norm_relu,
    init_fast_weight,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------------------------
# BatchEnsemble layers equal M ordinary layers with weight W * (gamma_m alpha_m^T)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0)])
@pytest.mark.parametrize("bias", [True, False])
def test_beconv2d_equals_member_convs(stride, padding, bias):
    m, b = 3, 2
    layer = BEConv2d(4, 5, 3, m, stride=stride, padding=padding, alpha=-0.5, gamma=-0.5, bias=bias)
    x = torch.randn(m * b, 4, 7, 7)  # member-major: rows m*b .. (m+1)*b-1 are member m
    y = layer(x)
    for i in range(m):
        w_i = layer.weight * torch.outer(layer.gamma[i], layer.alpha[i])[:, :, None, None]
        ref = F.conv2d(
            x[i * b : (i + 1) * b],
            w_i,
            layer.bias[i] if bias else None,
            stride=stride,
            padding=padding,
        )
        torch.testing.assert_close(y[i * b : (i + 1) * b], ref, rtol=1e-5, atol=1e-5)


def test_belinear_equals_member_linears():
    m, b = 4, 3
    layer = BELinear(6, 5, m, alpha=-1.0, gamma=0.5)
    x = torch.randn(m * b, 6)
    y = layer(x)
    assert y.shape == (m * b, 5)
    for i in range(m):
        w_i = layer.weight * torch.outer(layer.gamma[i], layer.alpha[i])
        ref = F.linear(x[i * b : (i + 1) * b], w_i, layer.bias[i])
        torch.testing.assert_close(y[i * b : (i + 1) * b], ref, rtol=1e-5, atol=1e-5)
    # extra dims between batch and features broadcast too
    x3 = torch.randn(m * b, 2, 6)
    y3 = layer(x3)
    for i in range(m):
        w_i = layer.weight * torch.outer(layer.gamma[i], layer.alpha[i])
        ref = F.linear(x3[i * b : (i + 1) * b], w_i, layer.bias[i])
        torch.testing.assert_close(y3[i * b : (i + 1) * b], ref, rtol=1e-5, atol=1e-5)


def test_be_parameters_and_shapes():
    conv = BEConv2d(3, 8, 3, 4, padding=1)
    assert dict((n, tuple(p.shape)) for n, p in conv.named_parameters()) == {
        "weight": (8, 3, 3, 3),
        "alpha": (4, 3),
        "gamma": (4, 8),
        "bias": (4, 8),
    }
    lin = BELinear(5, 7, 2, bias=False)
    assert dict((n, tuple(p.shape)) for n, p in lin.named_parameters()) == {
        "weight": (7, 5),
        "alpha": (2, 5),
        "gamma": (2, 7),
    }
    assert lin.bias is None
    r = repr(conv)
    assert "3, 8" in r and "ensemble_size=4" in r and "kernel_size=(3, 3)" in r
    r = repr(lin)
    assert "in_features=5" in r and "out_features=7" in r and "ensemble_size=2" in r


def test_be_slow_weight_has_pytorch_default_init():
    conv = BEConv2d(64, 64, 3, 2)
    bound = 1 / math.sqrt(64 * 9)  # kaiming_uniform(a=sqrt(5)) as nn.Conv2d
    assert conv.weight.abs().max() <= bound
    assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    lin = BELinear(256, 128, 2)
    bound = 1 / math.sqrt(256)
    assert lin.weight.abs().max() <= bound
    assert lin.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert lin.bias.abs().max() <= bound and not torch.equal(lin.bias[0], lin.bias[1])


def test_be_reset_parameters_keeps_requested_fast_init():
    conv = BEConv2d(16, 16, 3, 4, alpha=1.0, gamma=0.0)
    with torch.no_grad():
        conv.alpha.fill_(3.0)
        conv.gamma.fill_(3.0)
    conv.reset_parameters()
    assert torch.equal(conv.alpha, torch.ones(4, 16))
    assert torch.equal(conv.gamma, torch.ones(4, 16))


def test_be_frozen_factors_are_buffers_of_ones():
    m, b = 2, 3
    conv = BEConv2d(3, 4, 3, m, padding=1, alpha=None, gamma=0.5)
    names = dict(conv.named_parameters())
    assert "alpha" not in names and "gamma" in names
    assert "alpha" in dict(conv.named_buffers())
    assert torch.equal(conv.alpha, torch.ones(m, 3)) and not conv.alpha.requires_grad
    x = torch.randn(m * b, 3, 5, 5)
    y = conv(x)
    for i in range(m):
        w_i = conv.weight * conv.gamma[i][:, None, None, None]
        ref = F.conv2d(x[i * b : (i + 1) * b], w_i, conv.bias[i], padding=1)
        torch.testing.assert_close(y[i * b : (i + 1) * b], ref, rtol=1e-5, atol=1e-5)
    lin = BELinear(4, 3, m, alpha=None, gamma=None)
    assert sorted(n for n, _ in lin.named_parameters()) == ["bias", "weight"]
    assert sorted(n for n, _ in lin.named_buffers()) == ["alpha", "gamma"]
    xl = torch.randn(m * b, 4)
    yl = lin(xl)
    for i in range(m):
        torch.testing.assert_close(
            yl[i * b : (i + 1) * b], F.linear(xl[i * b : (i + 1) * b], lin.weight, lin.bias[i])
        )
    assert "alpha" in lin.state_dict() and "gamma" in lin.state_dict()


@pytest.mark.parametrize(
    "layer",
    [
        lambda: BEConv2d(3, 4, 3, 3),
        lambda: BELinear(3, 4, 3),
        lambda: BEBatchNorm2d(3, 3),
        lambda: MemberBatchNorm2d(3, 3),
    ],
)
def test_first_dim_not_divisible_by_ensemble_size_is_an_error(layer):
    mod = layer()
    x = torch.randn(4, 3, 5, 5) if not isinstance(mod, BELinear) else torch.randn(4, 3)
    with pytest.raises(
        ConfigError,
        match=r"first dimension 4 is not divisible by "
        r"ensemble_size=3",
    ):
        mod(x)


def test_fast_weights_broadcast_without_repeating_per_sample():
    """Fast weights are applied through a (M, B, ...) view: no repeat/expand/index copies."""
    calls = []

    class Record(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            calls.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    conv, lin = BEConv2d(3, 4, 3, 4, padding=1), BELinear(4, 2, 4)
    with Record():
        lin(torch.flatten(F.adaptive_avg_pool2d(conv(torch.randn(8, 3, 6, 6)), 1), 1))
    bad = {"repeat", "repeat_interleave", "expand", "expand_as", "tile", "index_select"}
    assert calls and not bad & set(calls), calls


@pytest.mark.parametrize(
    "bad",
    [
        dict(in_channels=0),
        dict(out_channels=-1),
        dict(kernel_size=0),
        dict(ensemble_size=0),
        dict(stride=0),
        dict(padding=-1),
        dict(alpha=1.5),
        dict(gamma=-2.0),
    ],
)
def test_beconv2d_rejects_bad_arguments(bad):
    kwargs = dict(in_channels=3, out_channels=4, kernel_size=3, ensemble_size=2)
    kwargs.update(bad)
    name, value = next(iter(bad.items()))
    with pytest.raises(ConfigError, match=rf"{name}={value}"):
        BEConv2d(**kwargs)


def test_belinear_rejects_bad_fast_weight_init():
    with pytest.raises(
        ConfigError, match=r"alpha=1.5: fast-weight init must be a number in \[-1, 1\]"
    ):
        BELinear(3, 4, 2, alpha=1.5)
    with pytest.raises(ConfigError, match=r"gamma='0.5'"):
        BELinear(3, 4, 2, gamma="0.5")
    with pytest.raises(ConfigError, match=r"in_features=0"):
        BELinear(0, 4, 2)


# ----------------------------------------------------------------------------------------------
# fast-weight init
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("v", FAST_WEIGHT_SWEEP)
def test_init_fast_weight_statistics(v):
    t = init_fast_weight((1000, 1000), v)
    assert t.shape == (1000, 1000) and t.dtype == torch.float32
    if v < 0:
        assert t.mean().item() == pytest.approx(1.0, abs=0.005)
        assert t.std().item() == pytest.approx(abs(v), rel=0.01)
    elif v == 0:
        assert torch.equal(t, torch.ones_like(t))
    else:
        assert torch.all((t == 1.0) | (t == -1.0))
        assert (t == 1.0).float().mean().item() == pytest.approx(v, abs=0.003)
        if v == 1.0:
            assert torch.equal(t, torch.ones_like(t))


def test_init_fast_weight_fills_a_tensor_in_place():
    p = nn.Parameter(torch.zeros(50, 40))
    out = init_fast_weight(p, -0.2)
    assert out is p and p.grad_fn is None and p.requires_grad
    assert p.mean().item() == pytest.approx(1.0, abs=0.05)
    assert torch.equal(init_fast_weight((3, 2), None), torch.ones(3, 2))


@pytest.mark.parametrize("v", [1.5, -1.01, 2, float("nan"), "0.5", True])
def test_init_fast_weight_rejects_out_of_range(v):
    with pytest.raises(ConfigError, match=r"v=.*fast-weight init must be"):
        init_fast_weight((3, 3), v)


def test_be_layer_fast_weights_follow_init_value():
    conv = BEConv2d(300, 300, 1, 8, alpha=-0.8, gamma=0.2)
    assert conv.alpha.mean().item() == pytest.approx(1.0, abs=0.05)
    assert conv.alpha.std().item() == pytest.approx(0.8, rel=0.05)
    assert torch.all(conv.gamma.abs() == 1.0)
    assert (conv.gamma == 1.0).float().mean().item() == pytest.approx(0.2, abs=0.03)


# ----------------------------------------------------------------------------------------------
# deep-ensemble layers: independent members
# ----------------------------------------------------------------------------------------------
def test_deep_conv2d_equals_member_convs_on_channel_blocks():
    m, b, cin, cout = 3, 2, 4, 5
    layer = DeepConv2d(cin, cout, 3, m, stride=2, padding=1)
    assert layer.weight.shape == (m, cout, cin, 3, 3) and layer.bias.shape == (m, cout)
    x = torch.randn(b, m * cin, 9, 9)  # channel-stacked
    y = layer(x)
    assert y.shape == (b, m * cout, 5, 5)
    for i in range(m):
        ref = F.conv2d(
            x[:, i * cin : (i + 1) * cin], layer.weight[i], layer.bias[i], stride=2, padding=1
        )
        torch.testing.assert_close(y[:, i * cout : (i + 1) * cout], ref, rtol=1e-5, atol=1e-5)
    assert not torch.equal(layer.weight[0], layer.weight[1])  # drawn independently
    with pytest.raises(ConfigError, match=r"channel-stacked input"):
        layer(torch.randn(b, cin, 9, 9))


def test_deep_linear_equals_member_linears():
    m, b = 3, 4
    layer = DeepLinear(6, 2, m)
    x = torch.randn(m * b, 6)
    y = layer(x)
    for i in range(m):
        ref = F.linear(x[i * b : (i + 1) * b], layer.weight[i], layer.bias[i])
        torch.testing.assert_close(y[i * b : (i + 1) * b], ref, rtol=1e-5, atol=1e-5)
    nobias = DeepLinear(6, 2, m, bias=False)
    torch.testing.assert_close(nobias(x)[:b], x[:b] @ nobias.weight[0].T)
    with pytest.raises(ConfigError, match=r"not divisible by ensemble_size=3"):
        layer(torch.randn(4, 6))


def test_deep_layers_members_are_independent():
    m, b = 3, 2
    conv = DeepConv2d(2, 3, 3, m, padding=1)
    x = torch.randn(b, m * 2, 5, 5)
    y0 = conv(x)
    with torch.no_grad():
        conv.weight[1].add_(1.0)
        conv.bias[1].add_(1.0)
    y1 = conv(x)
    torch.testing.assert_close(y1[:, :3], y0[:, :3])
    torch.testing.assert_close(y1[:, 6:], y0[:, 6:])
    assert not torch.allclose(y1[:, 3:6], y0[:, 3:6])


# ----------------------------------------------------------------------------------------------
# normalisation
# ----------------------------------------------------------------------------------------------
def _affine(x, w, b):
    return x * w[None, :, None, None] + b[None, :, None, None]


def test_be_batchnorm_shares_statistics_with_member_affine():
    m, b, c = 3, 4, 5
    bn = BEBatchNorm2d(c, m)
    assert bn.weight.shape == (m, c) and bn.bias.shape == (m, c)
    with torch.no_grad():
        bn.weight.normal_()
        bn.bias.normal_()
    ref = nn.BatchNorm2d(c, affine=False)
    x = torch.randn(m * b, c, 3, 3) * 2 + 1
    y, r = bn(x), ref(x)  # statistics over all M * B rows
    for i in range(m):
        sl = slice(i * b, (i + 1) * b)
        torch.testing.assert_close(y[sl], _affine(r[sl], bn.weight[i], bn.bias[i]))
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    bn.eval()
    ref.eval()
    y, r = bn(x), ref(x)
    torch.testing.assert_close(y[:b], _affine(r[:b], bn.weight[0], bn.bias[0]))
    assert "ensemble_size=3" in repr(bn)


@pytest.mark.parametrize("channel_stacked", [False, True])
def test_member_batchnorm_equals_separate_batchnorms(channel_stacked):
    m, b, c = 3, 4, 2
    bn = MemberBatchNorm2d(c, m, channel_stacked=channel_stacked)
    with torch.no_grad():
        bn.weight.normal_()
        bn.bias.normal_()
    refs = [nn.BatchNorm2d(c) for _ in range(m)]
    for i, r in enumerate(refs):
        with torch.no_grad():
            r.weight.copy_(bn.weight[i])
            r.bias.copy_(bn.bias[i])
    xs = [torch.randn(b, c, 3, 3) * (i + 1) + i for i in range(m)]  # different stats
    x = torch.cat(xs, dim=1) if channel_stacked else torch.cat(xs, dim=0)
    for mode in ("train", "eval"):
        bn.train(mode == "train")
        for r in refs:
            r.train(mode == "train")
        y = bn(x)
        for i in range(m):
            part = y[:, i * c : (i + 1) * c] if channel_stacked else y[i * b : (i + 1) * b]
            torch.testing.assert_close(part, refs[i](xs[i]), rtol=1e-5, atol=1e-5)
    for i in range(m):
        torch.testing.assert_close(bn.running_mean[i * c : (i + 1) * c], refs[i].running_mean)
        torch.testing.assert_close(bn.running_var[i * c : (i + 1) * c], refs[i].running_var)


# ----------------------------------------------------------------------------------------------
# fused BatchEnsemble conv -> norm -> ReLU
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha,gamma", [(0.5, 0.5), (-0.5, None), (None, -0.3), (None, None)])
@pytest.mark.parametrize("training", [True, False])
def test_fused_conv_norm_relu_equals_the_layers_in_turn(alpha, gamma, training):
    torch.manual_seed(0)
    m, b, c = 4, 8, 6
    conv = BEConv2d(5, c, 3, m, padding=1, bias=False, alpha=alpha, gamma=gamma).double()
    norm = BEBatchNorm2d(c, m).double()
    with torch.no_grad():
        norm.weight.normal_(1, 0.3)
        norm.bias.normal_(0, 0.3)
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
    conv2, norm2 = copy.deepcopy(conv), copy.deepcopy(norm)
    for mod in (conv, norm, conv2, norm2):
        mod.train(training)
    x = torch.randn(m * b, 5, 7, 7, dtype=torch.double)
    ref = F.relu(norm(conv(x)))
    out = be_conv_norm_relu(conv2, norm2, x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(ref)
    (ref * w).sum().backward()
    (out * w).sum().backward()
    pairs = zip(
        [*conv.named_parameters(), *norm.named_parameters()],
        [*conv2.named_parameters(), *norm2.named_parameters()],
        strict=True,
    )
    for (name, p), (_, q) in pairs:
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-11, msg=name)
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(norm2, key), getattr(norm, key))


@pytest.mark.parametrize("alpha,gamma", [(0.5, 0.5), (-0.5, None), (None, -0.3)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_block_on_an_untiled_input_equals_it_on_the_tiled_input(
    alpha, gamma, training, channels_last
):
    """shared_input=True (alpha in the kernel, one convolution of the B rows) is the same function
    as the tiled input, in outputs, gradients (the input's too) and running statistics."""
    torch.manual_seed(0)
    m, b, c = 3, 4, 6
    conv = BEConv2d(5, c, 3, m, stride=2, padding=1, bias=False, alpha=alpha, gamma=gamma)
    norm = BEBatchNorm2d(c, m)
    mods = [conv.double(), norm.double(), copy.deepcopy(conv), copy.deepcopy(norm)]
    for mod in mods:
        mod.train(training)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(b, 5, 9, 9, dtype=torch.double).contiguous(memory_format=fmt)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    tiled = x1.unsqueeze(0).expand(m, *x.shape).reshape(m * b, *x.shape[1:])
    ref = be_conv_norm_relu(mods[0], mods[1], tiled)
    out = be_conv_norm_relu(mods[2], mods[3], x2, shared_input=True)
    assert out.shape == ref.shape == (m * b, c, 5, 5)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    assert out.is_contiguous(memory_format=fmt)
    w = torch.randn_like(ref)
    (ref * w).sum().backward()
    (out * w).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-9, atol=1e-11)
    for (name, p), q in zip(
        [*mods[0].named_parameters(), *mods[1].named_parameters()],
        [*mods[2].parameters(), *mods[3].parameters()],
        strict=True,
    ):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-11, msg=name)
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(mods[3], key), getattr(mods[1], key))


@pytest.mark.parametrize("training", [True, False])
def test_fused_block_applying_the_next_alpha_equals_relu_then_the_multiply(training):
    """alpha_next: relu(norm(conv(x))) * a in one pass, a of both signs, with the gradient of
    a and of everything else as the multiply after the ReLU gives."""
    torch.manual_seed(0)
    m, b, c = 3, 4, 6
    conv = BEConv2d(5, c, 3, m, padding=1, bias=False, alpha=0.5, gamma=-0.5).double()
    norm = BEBatchNorm2d(c, m).double()
    mods = [conv, norm, copy.deepcopy(conv), copy.deepcopy(norm)]
    for mod in mods:
        mod.train(training)
    a1 = init_fast_weight(torch.empty(m, c, dtype=torch.double), 0.5).mul_(1.5)
    a1.requires_grad_()
    assert (a1 < 0).any() and (a1 > 0).any()
    a2 = a1.detach().clone().requires_grad_()
    x = torch.randn(m * b, 5, 7, 7, dtype=torch.double)
    ref = F.relu(norm(conv(x))).view(m, b, c, 7, 7) * a1.view(m, 1, c, 1, 1)
    ref = ref.view(m * b, c, 7, 7)
    out = be_conv_norm_relu(mods[2], mods[3], x, alpha_next=a2)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(ref)
    (ref * w).sum().backward()
    (out * w).sum().backward()
    torch.testing.assert_close(a2.grad, a1.grad, rtol=1e-9, atol=1e-11)
    for (name, p), q in zip(
        [*conv.named_parameters(), *norm.named_parameters()],
        [*mods[2].parameters(), *mods[3].parameters()],
        strict=True,
    ):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-11, msg=name)
    # and the next block, given its input already multiplied, skips its own alpha
    nxt = BEConv2d(c, c, 3, m, padding=1, bias=False).double()
    nxt_norm = BEBatchNorm2d(c, m).double()
    with torch.no_grad():
        nxt.alpha.copy_(a1)
        applied = be_conv_norm_relu(nxt, nxt_norm, out, alpha_applied=True)
        nxt_norm.reset_parameters()  # the running statistics as before the first call
        own = be_conv_norm_relu(nxt, nxt_norm, F.relu(norm(conv(x))))
    torch.testing.assert_close(applied, own, rtol=1e-10, atol=1e-12)


def test_fused_moments_in_float32_match_the_layers_within_float_tolerance():
    """The fused statistics (sums of z and z^2) in fp32, on conv outputs with a mean several
    times their spread, against the unfused layers (native BatchNorm's statistics)."""
    torch.manual_seed(0)
    m, b, c = 4, 16, 8
    conv = BEConv2d(4, c, 3, m, padding=1, bias=False, alpha=0.5, gamma=0.5)
    norm = BEBatchNorm2d(c, m)
    conv2, norm2 = copy.deepcopy(conv), copy.deepcopy(norm)
    x = torch.rand(m * b, 4, 12, 12) + 2.0  # positive inputs: conv outputs off zero
    z = conv(x)
    spread = z.std(dim=(0, 2, 3)).min() / z.mean(dim=(0, 2, 3)).abs().max()
    assert spread < 1.0  # the case where E[z^2] - E[z]^2 cancels most
    ref = F.relu(norm(z))
    out = be_conv_norm_relu(conv2, norm2, x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(norm2.running_var, norm.running_var, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# deep layers on a member list: the loop computation over the same parameters
# ----------------------------------------------------------------------------------------------
# (in, out, stride) of the convs of simple_cnn (conv1, conv4) and vgg11 (conv1, conv3, conv8)
DEEP_CONV_SHAPES = [(3, 16, 2), (16, 32, 1), (3, 64, 1), (128, 256, 1), (512, 512, 1)]


@pytest.mark.parametrize("cin,cout,stride", DEEP_CONV_SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_deep_conv2d_member_list_equals_the_grouped_convolution(cin, cout, stride, bias):
    m, b = 3, 2
    layer = DeepConv2d(cin, cout, 3, m, stride=stride, padding=1, bias=bias)
    x = torch.randn(b, m * cin, 6, 6, requires_grad=True)
    xs = [xi.detach().clone().requires_grad_() for xi in x.chunk(m, dim=1)]
    y, ys = layer(x), layer(xs)
    assert isinstance(ys, list) and len(ys) == m
    torch.testing.assert_close(torch.cat(ys, 1), y, rtol=1e-5, atol=1e-5)
    w = torch.randn_like(y)
    grads = torch.autograd.grad((y * w).sum(), [x, *layer.parameters()])
    grads_l = torch.autograd.grad(
        sum((yi * wi).sum() for yi, wi in zip(ys, w.chunk(m, 1), strict=True)),
        [*xs, *layer.parameters()],
    )
    torch.testing.assert_close(torch.cat(grads_l[:m], 1), grads[0], rtol=1e-5, atol=1e-5)
    for g, gl in zip(grads[1:], grads_l[m:], strict=True):
        torch.testing.assert_close(gl, g, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match=r"member list of ensemble_size=3 tensors"):
        layer(xs[:2])


def test_member_batchnorm_member_list_equals_channel_stacked():
    m, b, c = 3, 4, 5
    bn = MemberBatchNorm2d(c, m, channel_stacked=True)
    with torch.no_grad():
        bn.weight.normal_()
        bn.bias.normal_()
    bn2 = copy.deepcopy(bn)
    x = torch.randn(b, m * c, 3, 3) * 2 + 1
    xs = list(x.chunk(m, dim=1))
    for mode in ("train", "eval", "train"):
        bn.train(mode == "train")
        bn2.train(mode == "train")
        y, ys = bn(x), bn2(xs)
        torch.testing.assert_close(torch.cat(ys, 1), y)
        for key in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(bn2, key), getattr(bn, key), msg=key)
    assert int(bn2.num_batches_tracked) == 2  # one call counts once, not once per member
    w = torch.randn_like(y)
    (y * w).sum().backward()
    sum((yi * wi).sum() for yi, wi in zip(ys, w.chunk(m, 1), strict=True)).backward()
    torch.testing.assert_close(bn2.weight.grad, bn.weight.grad)
    torch.testing.assert_close(bn2.bias.grad, bn.bias.grad)
