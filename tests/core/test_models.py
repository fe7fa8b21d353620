"""core.models: build_model, output layout, deep-member independence, init pass-through."""

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.architectures import ARCHITECTURES, Conv
from core.config import ConfigError, TrialConfig
from core.layers import (
    BEBatchNorm2d,
    BEConv2d,
    BEConvNormReLU,
    BELinear,
    DeepConv2d,
    DeepLinear,
    MemberBatchNorm2d,
)
from core.metrics import ensemble_loss
from core.models import build_model, count_parameters

# smallest inputs each accepts
SIZE = {"simple_cnn": 8, "simple_cnn_wide": 8, "vgg11": 32, "vgg11_share": 32}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _images(arch, b=2, size=None):
    s = size or SIZE[arch]
    return torch.randn(b, 3, s, s)


@pytest.mark.parametrize("arch", list(SIZE))
@pytest.mark.parametrize("ensemble,m", [("single", 1), ("batch", 3), ("deep", 2)])
def test_output_is_members_by_batch_by_classes(arch, ensemble, m):
    model = build_model(arch, 7, ensemble_size=m, ensemble=ensemble)
    y = model(_images(arch, b=2))
    assert y.shape == (m, 2, 7)
    assert torch.isfinite(y).all()
    if m > 1:
        assert not torch.allclose(y[0], y[1])  # members differ
    model.eval()
    assert model(_images(arch, b=1)).shape == (m, 1, 7)  # eval, batch of one


def test_other_input_sizes_and_channels():
    model = build_model("simple_cnn", 4, ensemble_size=2)
    assert model(torch.randn(3, 3, 37, 41)).shape == (2, 3, 4)
    gray = build_model("simple_cnn", 4, ensemble_size=2, ensemble="deep", in_channels=1)
    assert gray(torch.randn(2, 1, 8, 8)).shape == (2, 2, 4)
    with pytest.raises(ConfigError, match=r"expected images \(B, 3, H, W\)"):
        model(torch.randn(2, 1, 8, 8))
    with pytest.raises(ConfigError, match=r"image size \(4, 4\) is too small; need H, W >= 8"):
        model(torch.randn(2, 3, 4, 4))


def test_batch_ensemble_uses_be_layers_everywhere():
    model = build_model("vgg11", 10, ensemble_size=4)
    kinds = [type(mod) for mod in model.modules()]
    n_conv = sum(
        isinstance(lay, type(ARCHITECTURES["vgg11"].layers[0]))
        for lay in ARCHITECTURES["vgg11"].layers
    )
    assert kinds.count(BEConv2d) == n_conv == 8
    assert kinds.count(BELinear) == 1  # the classifier too
    assert kinds.count(BEBatchNorm2d) == 8
    assert nn.Conv2d not in kinds and nn.Linear not in kinds and nn.BatchNorm2d not in kinds


@pytest.mark.parametrize(
    "norm,norm_type,conv_bias",
    [
        ("batch", BEBatchNorm2d, False),
        ("member", MemberBatchNorm2d, False),
        ("none", nn.Identity, True),
    ],
)
def test_batch_ensemble_norm_options(norm, norm_type, conv_bias):
    model = build_model("simple_cnn", 3, ensemble_size=2, norm=norm)
    for block in model.blocks.values():
        if hasattr(block, "conv"):
            assert type(block.norm) is norm_type
            assert (block.conv.bias is not None) == conv_bias
    assert model(_images("simple_cnn")).shape == (2, 2, 3)


def test_deep_ensemble_layers():
    model = build_model("simple_cnn", 3, ensemble_size=3, ensemble="deep")
    kinds = [type(mod) for mod in model.modules()]
    assert kinds.count(DeepConv2d) == 6 and kinds.count(DeepLinear) == 1
    assert kinds.count(MemberBatchNorm2d) == 6
    assert not any(k in kinds for k in (BEConv2d, BELinear, nn.Conv2d, nn.Linear))


def test_single_is_an_ordinary_network():
    model = build_model("simple_cnn", 5, ensemble_size=1, ensemble="single")
    kinds = {type(mod) for mod in model.modules()}
    assert {nn.Conv2d, nn.BatchNorm2d, nn.Linear} <= kinds
    assert not kinds & {BEConv2d, BELinear, DeepConv2d, DeepLinear}
    # single network param count: convs (no bias, BatchNorm follows) + BN + classifier
    convs = [(3, 16), (16, 16), (16, 16), (16, 32), (32, 32), (32, 32)]
    expected = sum(9 * i * o + 2 * o for i, o in convs) + 32 * 5 + 5
    assert count_parameters(model) == expected


# ----------------------------------------------------------------------------------------------
# deep-ensemble members are independent and share no tensor
# ----------------------------------------------------------------------------------------------
def _member_slice(p, m, i):
    return p.view(m, -1)[i]  # every deep parameter is member-major: member i owns row i


@pytest.mark.parametrize("arch", ["simple_cnn", "vgg11"])
def test_unshared_deep_members_share_no_tensor(arch):
    m = 3
    if arch == "vgg11":
        with torch.device("meta"):  # shapes only; storage is checked on simple_cnn
            model = build_model(arch, 10, ensemble_size=m, ensemble="deep")
            single = build_model(arch, 10, ensemble_size=1, ensemble="single")
    else:
        model = build_model(arch, 10, ensemble_size=m, ensemble="deep")
        single = build_model(arch, 10, ensemble_size=1, ensemble="single")
    params = list(model.parameters())
    # the student bug: "independent" members that share one trunk
    assert count_parameters(model) == m * count_parameters(single)
    # every tensor stacks the M members on dim 0; contiguous, so member rows are disjoint memory
    assert all(p.shape[0] == m and p.is_contiguous() for p in params)
    if arch == "simple_cnn":
        ptrs = [p.untyped_storage().data_ptr() for p in params]
        assert len(set(ptrs)) == len(ptrs)  # no two parameters alias one storage


def test_deep_members_are_independent():
    m = 3
    model = build_model("simple_cnn", 4, ensemble_size=m, ensemble="deep")
    x = _images("simple_cnn", b=4)
    for mode in ("train", "eval"):  # train: per-member batch statistics too
        model.train(mode == "train")
        y0 = model(x).detach()
        with torch.no_grad():
            for p in model.parameters():
                _member_slice(p, m, 1).add_(0.3 * torch.randn_like(_member_slice(p, m, 1)))
        y1 = model(x).detach()
        torch.testing.assert_close(y1[0], y0[0])
        torch.testing.assert_close(y1[2], y0[2])
        assert not torch.allclose(y1[1], y0[1])
    # gradients: member 0's output reaches member 0's slices only
    model.train()
    model.zero_grad()
    model(x)[0].sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert _member_slice(p.grad, m, 1).abs().max() == 0, name
        assert _member_slice(p.grad, m, 2).abs().max() == 0, name
    assert _member_slice(model.blocks["conv1"].conv.weight.grad, m, 0).abs().max() > 0


def test_batch_ensemble_member_fast_weights_only_affect_that_member():
    m = 3
    model = build_model("simple_cnn", 4, ensemble_size=m).eval()  # eval: fixed shared stats
    x = _images("simple_cnn", b=2)
    y0 = model(x).detach()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, BEConv2d | BELinear):
                mod.alpha[1].mul_(1.5)
    y1 = model(x).detach()
    torch.testing.assert_close(y1[0], y0[0])
    torch.testing.assert_close(y1[2], y0[2])
    assert not torch.allclose(y1[1], y0[1])


def test_all_parameters_get_gradients():
    for ensemble, m in (("single", 1), ("batch", 2), ("deep", 2)):
        model = build_model(
            "simple_cnn", 3, ensemble_size=m, ensemble=ensemble, sharing_network="all"
        )
        model(_images("simple_cnn")).sum().backward()
        assert all(p.grad is not None for p in model.parameters())


# ----------------------------------------------------------------------------------------------
# alpha / gamma reach every BatchEnsemble layer (the student's init overwrote them)
# ----------------------------------------------------------------------------------------------
def _fast(model, name):
    return [getattr(mod, name) for mod in model.modules() if isinstance(mod, BEConv2d | BELinear)]


def test_build_model_passes_alpha_gamma_to_every_be_layer():
    model = build_model("vgg11", 10, ensemble_size=4, alpha=1.0, gamma=-0.2)
    alphas, gammas = _fast(model, "alpha"), _fast(model, "gamma")
    assert len(alphas) == len(gammas) == 9  # 8 convs + classifier
    for a in alphas:
        assert torch.equal(a, torch.ones_like(a))
    for g in gammas:
        assert not torch.all(g == 1.0)
    g = torch.cat([g.flatten() for g in gammas])
    assert g.mean().item() == pytest.approx(1.0, abs=0.02)
    assert g.std().item() == pytest.approx(0.2, rel=0.05)

    model = build_model("simple_cnn", 10, ensemble_size=4, alpha=0.0, gamma=0.8)
    for a in _fast(model, "alpha"):
        assert torch.equal(a, torch.ones_like(a))
    g = torch.cat([g.flatten() for g in _fast(model, "gamma")])
    assert torch.all(g.abs() == 1.0)
    assert (g == 1.0).float().mean().item() == pytest.approx(0.8, abs=0.06)


def test_frozen_fast_weights_are_buffers():
    model = build_model("simple_cnn", 10, ensemble_size=4, alpha=None, gamma=0.5)
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.endswith(".alpha") for n in names)
    assert sum(n.endswith(".gamma") for n in names) == 7
    buffers = dict(model.named_buffers())
    assert all(
        torch.equal(buffers[f"blocks.{n}.conv.alpha"], torch.ones(4, i))
        for n, i in (("conv1", 3), ("conv2", 16), ("conv6", 32))
    )
    full = build_model("simple_cnn", 10, ensemble_size=4)
    alpha_sizes = 4 * (3 + 16 + 16 + 16 + 32 + 32 + 32)
    assert count_parameters(full) - count_parameters(model) == alpha_sizes


def test_fast_weight_names_are_only_alpha_and_gamma():
    model = build_model("simple_cnn", 10, ensemble_size=2)
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        assert leaf in {"weight", "bias", "alpha", "gamma"}
        if leaf in {"alpha", "gamma"}:
            assert p.shape[0] == 2


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(ensemble_size=0), r"ensemble_size=0: must be an integer in \[1, 64\]"),
        (dict(ensemble="single", ensemble_size=4), r"ensemble_size=4: ensemble 'single'"),
        (dict(ensemble="batch", ensemble_size=1), r"ensemble_size=1: ensemble 'batch' needs"),
        (dict(ensemble="deep", ensemble_size=1), r"ensemble_size=1: ensemble 'deep' needs"),
        (
            dict(arch="resnet50"),
            r"arch='resnet50' is not allowed; choose one of "
            r"\['simple_cnn', 'simple_cnn_wide', 'vgg11', 'vgg11_share'\]",
        ),
        (
            dict(ensemble="mc_dropout"),
            r"ensemble='mc_dropout' is not allowed; choose one of "
            r"\['single', 'batch', 'deep', 'packed', 'mimo'\]",
        ),
        (dict(norm="layer"), r"norm='layer' is not allowed; choose one of"),
        (
            dict(norm="member", ensemble="deep"),
            r"norm='member': per-member statistics .* not of 'deep'",
        ),
        (dict(sharing_network="middle"), r"sharing_network='middle' is not allowed"),
        (dict(sharing_ensemble="half"), r"sharing_ensemble='half' is not allowed"),
        (dict(alpha=1.5), r"alpha=1.5: fast-weight init must be a number in \[-1, 1\]"),
        (dict(gamma=-3), r"gamma=-3: fast-weight init must be a number in"),
        (dict(num_classes=0), r"num_classes=0"),
        (dict(ensemble_size=2.0), r"ensemble_size=2.0: must be an integer"),
    ],
)
def test_build_model_rejects_bad_arguments(kwargs, match):
    args = dict(arch="simple_cnn", num_classes=10) | kwargs
    with pytest.raises(ConfigError, match=match):
        build_model(args.pop("arch"), **args)


def test_count_parameters_counts_tied_tensors_once():
    tied = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    tied[1].weight = tied[0].weight
    assert count_parameters(tied) == 16 + 4 + 4
    assert count_parameters(nn.BatchNorm2d(5)) == 10  # running stats are buffers


def test_model_trains_one_step():
    model = build_model("simple_cnn", 3, ensemble_size=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _images("simple_cnn", b=4), torch.tensor([0, 1, 2, 0])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = F.cross_entropy(model(x).flatten(0, 1), y.repeat(2))
    loss.backward()
    opt.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.endswith(".alpha") for n in changed) and any(n.endswith(".gamma") for n in changed)


def test_config_allows_exactly_the_registry_names():
    # The names are declared once, in the registry; the config's check reads them there.
    for name in ARCHITECTURES:
        assert TrialConfig.from_dict({"arch": name, "sharing_network": "none"}).arch == name
    with pytest.raises(ConfigError, match=re.escape(f"choose one of {list(ARCHITECTURES)}")):
        TrialConfig.from_dict({"arch": "resnet9"})
    for spec in ARCHITECTURES.values():
        regions = [layer.region for layer in spec.layers]
        assert regions[0] == "early" and regions[-1] == "deep"


# ----------------------------------------------------------------------------------------------
# the VGG11 tables
# ----------------------------------------------------------------------------------------------
def _sizes(spec, size=32):
    """Input side of each layer, following the strides and pools of the table."""
    out = {}
    for lay in spec.layers:
        out[lay.name] = size
        if isinstance(lay, Conv):
            size = size // lay.stride // (2 if lay.pool else 1)
    return out


def test_vgg11_is_the_cifar_vgg11():
    spec = ARCHITECTURES["vgg11"]
    convs = [lay for lay in spec.layers if isinstance(lay, Conv)]
    # VGG config A: 64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert [c.in_channels for c in convs] == [3, 64, 128, 256, 256, 512, 512, 512]
    assert [c.name for c in convs if c.pool] == ["conv1", "conv2", "conv4", "conv6", "conv8"]
    assert all((c.kernel_size, c.stride, c.padding) == (3, 1, 1) for c in convs)
    assert list(_sizes(spec).values()) == [32, 16, 8, 8, 4, 4, 2, 2, 1]
    assert spec.min_input_size == 32
    # regions: the 64-256 channel stages early, the 512 stages and the classifier deep
    assert [lay.region for lay in spec.layers] == ["early"] * 4 + ["deep"] * 5
    share = ARCHITECTURES["vgg11_share"]
    assert list(_sizes(share).values()) == [32, 16, 8, 8, 8, 4, 4, 2, 2, 1]
    assert [lay.region for lay in share.layers] == ["early"] * 5 + ["deep"] * 5


def _macs(spec, size=32):
    """Multiply-adds per image and member: k*k*in*out per output pixel, and the classifier."""
    total = 0
    for lay in spec.layers:
        if isinstance(lay, Conv):
            size //= lay.stride
            total += size * size * lay.kernel_size**2 * lay.in_channels * lay.out_channels
            size //= 2 if lay.pool else 1
        else:
            total += lay.in_features * 10
    return total


@pytest.mark.parametrize(
    "arch,mmacs",
    [("simple_cnn", 2.8), ("simple_cnn_wide", 10.8), ("vgg11", 153), ("vgg11_share", 191)],
)
def test_descriptions_state_the_compute(arch, mmacs):
    spec = ARCHITECTURES[arch]
    assert f"{mmacs}M multiply-adds" in spec.description
    assert _macs(spec) / 1e6 == pytest.approx(mmacs, rel=0.02)


# ----------------------------------------------------------------------------------------------
# a deep-ensemble member trains as if alone (core.metrics.ensemble_loss, ensemble='deep')
# ----------------------------------------------------------------------------------------------
def _deep_and_member0_single(m=4):
    torch.manual_seed(0)
    deep = build_model("simple_cnn", 10, ensemble_size=m, ensemble="deep")
    single = build_model("simple_cnn", 10, ensemble_size=1, ensemble="single")
    deep_params, single_params = dict(deep.named_parameters()), dict(single.named_parameters())
    assert deep_params.keys() == single_params.keys()
    with torch.no_grad():
        for name, p in single_params.items():
            p.copy_(_member_slice(deep_params[name], m, 0).view(p.shape))
    return deep, single


def test_deep_member_gets_the_gradient_of_a_single_network_on_the_same_batch():
    from core.metrics import ensemble_loss

    m = 4
    deep, single = _deep_and_member0_single(m)
    x = _images("simple_cnn", b=6)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    torch.testing.assert_close(deep(x)[0], single(x)[0])  # same member-0 function
    ensemble_loss(deep(x), y, "deep").backward()
    ensemble_loss(single(x), y, "single").backward()
    for name, p in single.named_parameters():
        g = _member_slice(dict(deep.named_parameters())[name].grad, m, 0).view(p.shape)
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6, msg=name)
    # the old convention (mean over members) gave each member 1/M of it
    deep.zero_grad()
    ensemble_loss(deep(x), y, "batch").backward()
    w = deep.blocks["conv1"].conv.weight.grad
    ratio = _member_slice(w, m, 0).norm() / single.blocks["conv1"].conv.weight.grad.norm()
    assert float(ratio) == pytest.approx(1 / m, rel=1e-4)


def test_one_sgd_step_moves_a_deep_member_as_it_moves_a_single_network():
    from core.metrics import ensemble_loss
    from core.optim import build_optimizer, train_step

    m = 3
    deep, single = _deep_and_member0_single(m)
    x = _images("simple_cnn", b=6)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    base = dict(arch="simple_cnn", optimizer="sgd", lr=0.1, momentum=0.0, augment=False)
    cfg_deep = TrialConfig(**base, ensemble="deep", ensemble_size=m)
    cfg_single = TrialConfig(**base, ensemble="single", ensemble_size=1)
    opt_d, _ = build_optimizer(deep, cfg_deep, 100, 1)
    opt_s, _ = build_optimizer(single, cfg_single, 100, 1)
    with torch.no_grad():
        member_mean = float(ensemble_loss(deep.train()(x), y, "batch"))
    loss_d, _ = train_step(deep, opt_d, x, y, cfg_deep)
    loss_s, _ = train_step(single, opt_s, x, y, cfg_single)
    # the reported loss is the mean over members for every kind of ensemble
    assert loss_d == pytest.approx(member_mean, rel=1e-5)
    for name, p in single.named_parameters():
        q = _member_slice(dict(deep.named_parameters())[name], m, 0).view(p.shape)
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=name)


def _train_fused_against_unfused(fused, plain) -> torch.Tensor:
    """Give `plain` (built with fuse=False: the layers in turn) fused's state, run one backward
    pass of both on the same batch and check every gradient; return the batch."""
    from core.network import FusedConvBlock

    plain.load_state_dict(fused.state_dict())  # same parameters and buffers, same keys
    assert any(isinstance(blk, FusedConvBlock) for blk in fused.modules())
    assert not any(isinstance(blk, FusedConvBlock) for blk in plain.modules())
    x = torch.randn(4, 3, 16, 16, dtype=torch.double)
    y = torch.randint(0, 10, (4,))
    m = fused.ensemble_size
    for model in (fused, plain):
        F.cross_entropy(model(x).flatten(0, 1), y.repeat(m)).backward()
    for (name, p), (_, q) in zip(fused.named_parameters(), plain.named_parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, msg=name)
    return x


# the blocks of simple_cnn that apply the next block's alpha: no pooling after them
CARRIERS = {"conv1": "conv2", "conv2": "conv3", "conv4": "conv5", "conv5": "conv6"}


@pytest.mark.parametrize("zero_alpha", [False, True], ids=["alphas-applied-early", "a-zero"])
def test_fused_blocks_train_like_the_unfused_layers_and_share_their_checkpoints(zero_alpha):

    torch.manual_seed(0)
    fused = build_model("simple_cnn", 10, ensemble_size=3).double()
    plain = build_model("simple_cnn", 10, ensemble_size=3, fuse=False).double()
    carriers = {"conv1", "conv2", "conv4", "conv5"}
    if zero_alpha:  # an alpha entry exactly 0: conv2's alpha is then applied by conv2 itself
        with torch.no_grad():
            fused.blocks["conv2"].conv.alpha[1, 3] = 0.0
        carriers.discard("conv1")
    cpu = torch.device("cpu")
    carried = {
        name: blk.alpha_out(cpu)
        for name, blk in fused.blocks.items()
        if isinstance(blk, BEConvNormReLU) and blk.alpha_out(cpu) is not None
    }
    assert set(carried) == carriers
    for a, t in carried.items():
        assert t is fused.blocks[CARRIERS[a]].conv.alpha
    x = _train_fused_against_unfused(fused, plain)
    fused.eval()
    plain.eval()
    torch.testing.assert_close(fused(x), plain(x))


def test_a_block_whose_alpha_is_carried_applies_it_itself_when_called_alone():
    """conv3's alpha is applied by conv2's output pass inside the network; conv3 called on its
    own (a hook, a probe) gets no such output and must apply its alpha as the unfused layers
    do, also right after a full forward pass of the network. (conv3 pools, so it carries no
    alpha of its own successor: its output is the unfused block's.)"""
    torch.manual_seed(0)
    fused = build_model("simple_cnn", 10, ensemble_size=3).double().eval()
    plain = build_model("simple_cnn", 10, ensemble_size=3, fuse=False).double().eval()
    plain.load_state_dict(fused.state_dict())
    cpu = torch.device("cpu")
    assert fused.blocks["conv2"].alpha_out(cpu) is fused.blocks["conv3"].conv.alpha
    assert fused.blocks["conv3"].alpha_out(cpu) is None
    h = torch.randn(3 * 2, fused.blocks["conv3"].conv.in_channels, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fused.blocks["conv3"](h), plain.blocks["conv3"](h))
        fused(torch.randn(2, 3, 32, 32, dtype=torch.float64))  # sets conv3's flag, consumed
        torch.testing.assert_close(fused.blocks["conv3"](h), plain.blocks["conv3"](h))


# ----------------------------------------------------------------------------------------------
# a deep ensemble's two computations (deep_impl) over one parameter layout
# ----------------------------------------------------------------------------------------------
def _deep_pair(arch, m=2, **kw):
    """The same deep ensemble twice: computed grouped and as a loop over members."""
    grouped = build_model(arch, 10, ensemble_size=m, ensemble="deep", deep_impl="grouped", **kw)
    loop = build_model(arch, 10, ensemble_size=m, ensemble="deep", deep_impl="loop", **kw)
    loop.load_state_dict(grouped.state_dict())  # one layout: a grouped checkpoint loads as is
    return grouped, loop


@pytest.mark.parametrize(
    "arch,kw",
    [
        ("simple_cnn", {}),
        ("vgg11", {}),
        ("simple_cnn", {"sharing_ensemble": "early"}),  # plain -> members, then the loop
        ("simple_cnn", {"sharing_ensemble": "deep"}),  # members -> member before shared layers
        ("simple_cnn", {"sharing_network": "all"}),  # tied weights
        ("simple_cnn", {"norm": "none"}),  # conv biases
    ],
)
def test_deep_loop_computes_what_grouped_computes(arch, kw):
    m = 3 if arch == "simple_cnn" else 2
    grouped, loop = _deep_pair(arch, m, **kw)
    x, y = _images(arch, b=3), torch.randint(0, 10, (3,))
    for model in (grouped, loop):
        ensemble_loss(model(x), y, "deep").backward()  # train mode: batch statistics
    params = zip(grouped.named_parameters(), loop.named_parameters(), strict=True)
    for (name, p), (_, q) in params:
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
    buffers = zip(grouped.named_buffers(), loop.named_buffers(), strict=True)
    for (name, p), (_, q) in buffers:  # running statistics, num_batches_tracked
        torch.testing.assert_close(q, p, msg=name)
    grouped.eval()
    loop.eval()
    torch.testing.assert_close(loop(x), grouped(x), rtol=1e-4, atol=1e-5)


def test_deep_impl_checkpoints_load_either_way_and_can_be_switched():
    grouped, loop = _deep_pair("simple_cnn", 3)
    assert loop.state_dict().keys() == grouped.state_dict().keys()
    assert count_parameters(loop) == count_parameters(grouped)
    loop2 = build_model("simple_cnn", 10, ensemble_size=3, ensemble="deep", deep_impl="loop")
    grouped2 = build_model("simple_cnn", 10, ensemble_size=3, ensemble="deep")
    grouped2.load_state_dict(loop.state_dict())  # and a loop checkpoint loads into grouped
    loop2.load_state_dict(grouped2.state_dict())
    x = _images("simple_cnn", b=2)
    for model in (grouped, loop, loop2, grouped2):
        model.eval()
    ref = grouped(x)
    for model in (loop, loop2, grouped2):
        torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-6)
    grouped.deep_impl = "loop"  # switched on a built model: same parameters, other computation
    torch.testing.assert_close(grouped(x), ref, rtol=1e-5, atol=1e-6)
    assert "deep_impl=loop" in repr(grouped)
    with pytest.raises(ConfigError, match=r"deep_impl='vmap' is not allowed"):
        grouped.deep_impl = "vmap"
    with pytest.raises(ConfigError, match=r"deep_impl='fast' is not allowed"):
        build_model("simple_cnn", 10, ensemble_size=2, ensemble="deep", deep_impl="fast")


def test_deep_impl_auto_resolves_by_device_arch_and_precision(monkeypatch):
    from core import network
    from core.network import DEEP_IMPL_AUTO, forward_precision, resolve_deep_impl

    assert set(DEEP_IMPL_AUTO.values()) <= {"grouped", "loop"}
    for impl in ("grouped", "loop"):
        assert resolve_deep_impl(impl, "cpu", "vgg11", "bf16") == impl
    for (device, arch, precision), impl in DEEP_IMPL_AUTO.items():
        if arch is not None and precision is not None:  # the fully specified entries
            assert resolve_deep_impl("auto", device, arch, precision) == impl
    assert resolve_deep_impl("auto", "no-such-device", "vgg11") == "grouped"
    # the most specific entry wins: (arch, precision), then arch, then precision, then device
    table = {
        ("cpu", None, None): "grouped",
        ("cpu", None, "bf16"): "loop",
        ("cpu", "vgg11", None): "loop",
        ("cpu", "vgg11", "bf16"): "grouped",
    }
    monkeypatch.setattr(network, "DEEP_IMPL_AUTO", table)
    assert resolve_deep_impl("auto", "cpu", "simple_cnn", "fp32") == "grouped"
    assert resolve_deep_impl("auto", "cpu", "simple_cnn", "bf16") == "loop"
    assert resolve_deep_impl("auto", "cpu", "vgg11", "fp32") == "loop"
    assert resolve_deep_impl("auto", "cpu", "vgg11", "bf16") == "grouped"
    # the precision is the forward pass's: bf16 under bf16 autocast or for bf16 inputs
    x = torch.randn(2, 3, 32, 32)
    assert forward_precision(x) == "fp32" and forward_precision(x.bfloat16()) == "bf16"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert forward_precision(x) == "bf16"
    # and the model computes what the table says for it: a member list (loop) or not
    model = build_model("simple_cnn", 10, ensemble_size=2, ensemble="deep")
    assert model.deep_impl == "auto"
    seen = []
    block = next(iter(model.blocks.values()))
    block.register_forward_pre_hook(lambda _, args: seen.append(isinstance(args[0], list)))
    model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    assert seen == [False, True]


@pytest.mark.parametrize(
    "changes",
    [
        dict(sharing_network="all"),
        dict(sharing_ensemble="deep"),
        dict(sharing_ensemble="early"),
        dict(alpha=-0.5, gamma=None),
        dict(alpha=None, gamma=0.5),
    ],
    ids=["tied", "ensemble-deep", "ensemble-early", "no-gamma", "no-alpha"],
)
def test_fused_blocks_equal_the_unfused_layers_under_sharing_and_frozen_fast_weights(changes):
    """Tied slow weights, shared regions (the first BatchEnsemble block after a plain region
    takes the untiled input) and frozen fast weights: the gradients of the unfused layers."""

    torch.manual_seed(0)
    fused = build_model("simple_cnn", 10, ensemble_size=3, ensemble="batch", **changes).double()
    plain = build_model(
        "simple_cnn", 10, ensemble_size=3, ensemble="batch", fuse=False, **changes
    ).double()
    _train_fused_against_unfused(fused, plain)


# ----------------------------------------------------------------------------------------------
# simple_cnn_wide: simple_cnn's table at twice the width (the learn preset's network)
# ----------------------------------------------------------------------------------------------
def _single_params(spec, classes=10):
    """A single network's parameters from its table: k*k*in*out per conv (no conv bias) and
    its norm's weight and bias (2*out), the classifier's in*K weights and K biases."""
    total = 0
    for lay in spec.layers:
        if isinstance(lay, Conv):
            total += lay.kernel_size**2 * lay.in_channels * lay.out_channels + 2 * lay.out_channels
        else:
            total += lay.in_features * classes + classes
    return total


@pytest.mark.parametrize("arch,params", [("simple_cnn", 28_698), ("simple_cnn_wide", 112_682)])
def test_simple_cnn_parameters_against_the_table(arch, params):
    spec = ARCHITECTURES[arch]
    assert _single_params(spec) == params
    assert count_parameters(build_model(arch, 10, ensemble_size=1, ensemble="single")) == params


def test_simple_cnn_wide_is_simple_cnn_at_twice_the_width():
    narrow, wide = ARCHITECTURES["simple_cnn"].layers, ARCHITECTURES["simple_cnn_wide"].layers
    assert [(a.name, a.region, a.tie) for a in narrow] == [(b.name, b.region, b.tie) for b in wide]
    convs = [(a, b) for a, b in zip(narrow, wide, strict=True) if isinstance(a, Conv)]
    assert all(b.out_channels == 2 * a.out_channels for a, b in convs)
    assert [b.out_channels for _, b in convs] == [32, 32, 32, 64, 64, 64]
