"""bf16 on the CPU: what `auto` resolves to with and without native bf16 units, and every block
type computed under bf16 autocast against the same model in fp32 (outputs and gradients to
bf16 tolerance), with its activations kept in bf16 from layer to layer."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from core import runtime as R
from core.config import TrialConfig
from core.layers import BEConv2d, BEConvNormReLU, DeepConv2d, PackedConv2d
from core.models import build_model
from core.runtime import Capabilities, prepare_model, resolve_runtime

CPU = torch.device("cpu")


# ----------------------------------------------------------------------------------------------
# what auto resolves to
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "units,expected",
    [(None, ("fp32", False)), ("AVX512-BF16", ("bf16", True)), ("AMX", ("bf16", True))],
)
def test_auto_on_a_cpu_is_bf16_and_channels_last_only_with_bf16_units(units, expected):
    caps = Capabilities(bf16=True, no_compile=None, bf16_units=units)
    rt = resolve_runtime(TrialConfig(), CPU, caps)
    assert (rt.precision, rt.channels_last) == expected
    assert rt.compile is False
    line = rt.describe(TrialConfig())
    reason = f"{units} runs bf16 matmuls natively" if units else "no AMX or AVX512-BF16"
    assert f"precision={expected[0]} (auto: {reason}" in line
    assert f"channels_last={'on' if expected[1] else 'off'} (auto: with {expected[0]})" in line


def test_explicit_values_are_kept_whatever_the_units():
    no_units = Capabilities(bf16=True, no_compile=None, bf16_units=None)
    cfg = TrialConfig(precision="bf16", channels_last="off")
    rt = resolve_runtime(cfg, CPU, no_units)  # bf16 without units: allowed (emulated), as asked
    assert (rt.precision, rt.channels_last) == ("bf16", False)
    assert "precision=bf16 channels_last=off" in rt.describe(cfg)  # no "(auto" for them
    amx = Capabilities(bf16=True, no_compile=None, bf16_units="AMX")
    rt = resolve_runtime(TrialConfig(precision="fp32"), CPU, amx)
    assert (rt.precision, rt.channels_last) == ("fp32", False)  # channels_last follows fp32


def test_cpu_bf16_units_are_what_torch_detects():
    units = R.cpu_bf16_units()
    assert units in (None, "AVX512-BF16", "AMX")
    assert (units == "AMX") == torch.cpu._is_amx_tile_supported()
    if units is None:
        assert not torch.cpu._is_avx512_bf16_supported()
    assert R.capabilities(CPU).bf16_units == units


# ----------------------------------------------------------------------------------------------
# every block type: bf16 against fp32
# ----------------------------------------------------------------------------------------------
MODELS = {
    "single": dict(ensemble="single", ensemble_size=1),
    "batch-fused": dict(ensemble="batch", ensemble_size=3),
    "batch-unfused": dict(ensemble="batch", ensemble_size=3, fuse=False),
    "batch-gamma-none": dict(ensemble="batch", ensemble_size=3, gamma=None),
    "batch-norm-member": dict(ensemble="batch", ensemble_size=3, norm="member"),
    "batch-shared-early": dict(ensemble="batch", ensemble_size=3, sharing_ensemble="early"),
    "batch-tied-all": dict(ensemble="batch", ensemble_size=3, sharing_network="all"),
    "deep-grouped": dict(ensemble="deep", ensemble_size=3, deep_impl="grouped"),
    "deep-loop": dict(ensemble="deep", ensemble_size=3, deep_impl="loop"),
    "deep-shared-deep": dict(ensemble="deep", ensemble_size=3, sharing_ensemble="deep"),
    "packed": dict(ensemble="packed", ensemble_size=3),
}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||: the error of a relative to the reference b as a whole."""
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.mark.parametrize("name", list(MODELS))
def test_bf16_model_keeps_bf16_activations_from_layer_to_layer(name):
    """Under bf16 autocast in channels_last (what auto is on a CPU with bf16 units) every
    convolution after the first reads a bf16 input, as in the single network (no fp32 round
    trip between layers), and the logits stay close to the fp32 model's."""
    torch.manual_seed(0)
    ref, model = _pair(name, training=True)
    x = torch.randn(16, 3, 32, 32)
    images = x.contiguous(memory_format=torch.channels_last)
    seen: list[tuple[str, torch.dtype]] = []

    def record(name):
        def hook(_, args):
            t = args[0][0] if isinstance(args[0], list | tuple) else args[0]
            if not name.startswith("blocks.conv1"):  # the images: autocast casts them for it
                seen.append((name, t.dtype))

        return hook

    hooks = [
        m.register_forward_pre_hook(record(n)) for n, m in model.named_modules() if _is_conv(m)
    ]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images)
    for h in hooks:
        h.remove()
    assert len(seen) >= 5, seen  # simple_cnn: 6 convolutions, the first reads the images
    assert {dtype for _, dtype in seen} == {torch.bfloat16}, seen
    assert _rel(out, ref(x)) < 0.05


# Relative errors of bf16 against fp32 a block may show (||bf16 - fp32|| / ||fp32||; a
# parameter's against the block's largest parameter gradient, as gamma's gradient is 0 in
# exact arithmetic under per-member norms). Set from the native single network's own errors on
# these blocks (weight gradients up to 0.077, an input gradient through a max-pool up to 0.076,
# whose argmax moves under rounding), with the same margin for every kind.
TOL = {
    "output": 0.02,
    "input": 0.08,
    "input, max-pool": 0.15,
    "parameter": 0.12,
    "statistics": 0.01,
}
POOLED = ("conv3", "conv6")  # simple_cnn's blocks that end in a max-pool


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("training", [True, False])
def test_bf16_blocks_match_fp32(name, training):
    """Each block of the model alone (conv, norm, ReLU, pooling; the classifier), on the input
    it gets in the fp32 model: under bf16 autocast in channels_last its output, the gradient
    of its input and of every parameter, and its running statistics within bf16's error of
    fp32 (TOL), the same for every block type as for the native layers."""
    torch.manual_seed(0)
    ref, model = _pair(name, training)
    inputs: dict[str, object] = {}
    probe = copy.deepcopy(ref)  # its forward updates its running statistics, not ref's
    for n, block in probe.blocks.items():
        block.register_forward_pre_hook(lambda _, args, n=n: inputs.setdefault(n, args[0]))
    probe(torch.randn(8, 3, 32, 32))
    for n, block in ref.blocks.items():
        x32 = _detached(inputs[n])
        x16 = _detached(inputs[n], channels_last=True)
        y32 = block(x32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y16 = model.blocks[n](x16)
        ys32, ys16 = _flat(y32), _flat(y16)
        assert (
            _rel(torch.cat([t.flatten() for t in ys16]), torch.cat([t.flatten() for t in ys32]))
            < 0.02
        ), n
        w = [torch.randn_like(t) for t in ys32]
        sum((t * wi).sum() for t, wi in zip(ys32, w, strict=True)).backward()
        sum((t.float() * wi).sum() for t, wi in zip(ys16, w, strict=True)).backward()
        for a, b in zip(_flat(x16), _flat(x32), strict=True):
            tol = TOL["input, max-pool" if n in POOLED else "input"]
            assert _rel(a.grad, b.grad) < tol, f"{n}: input gradient"
        pairs = zip(block.named_parameters(), model.blocks[n].parameters(), strict=True)
        pairs = list(pairs)
        scale = max(float(p.grad.norm()) for _, p in pairs)
        for (pname, p), q in pairs:
            assert q.grad.dtype == torch.float32, pname
            assert float((q.grad - p.grad).norm()) / scale < TOL["parameter"], f"{n}.{pname}"
        for (bname, b), c in zip(block.named_buffers(), model.blocks[n].buffers(), strict=True):
            if b.is_floating_point():
                assert _rel(c, b) < TOL["statistics"], f"{n}.{bname}"


def _pair(name: str, training: bool) -> tuple[nn.Module, nn.Module]:
    """The fp32 model and its copy prepared as a bf16 trial runs it (channels_last)."""
    settings = dict(MODELS[name])
    fuse = settings.pop("fuse", True)
    ref = build_model("simple_cnn", 10, fuse=fuse, **settings).train(training)
    cfg = TrialConfig(precision="bf16", channels_last="on", compile="off")
    return ref, prepare_model(copy.deepcopy(ref), resolve_runtime(cfg, CPU))


def _cat(ts):
    return torch.cat([t.flatten() for t in ts])


def _flat(x) -> list[torch.Tensor]:
    return list(x) if isinstance(x, list | tuple) else [x]


def _detached(x, channels_last: bool = False):
    """A leaf copy of a block input (a tensor or a member list), gradients on."""
    if isinstance(x, list | tuple):
        return [_detached(t, channels_last) for t in x]
    t = x.detach().clone()
    if channels_last and t.dim() == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_()


def _dtype(x) -> torch.dtype:
    return x[0].dtype if isinstance(x, list | tuple) else x.dtype


def _is_conv(mod: nn.Module) -> bool:
    return isinstance(mod, nn.Conv2d | BEConv2d | DeepConv2d | PackedConv2d | BEConvNormReLU)
