"""precision, channels_last and compile: the fields, their resolution per device, and training,
evaluation, IVON and checkpoints under each (tiny models and synthetic data, on the CPU)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from core import columns as C
from core import runtime as R
from core.config import ConfigError, TrialConfig
from core.models import model_for_config
from core.optim import build_optimizer, predict_probs, train_step
from core.provenance import cpu_model
from core.runtime import Capabilities, load_model_state, resolve_runtime, unwrap
from core.train import train

TINY = dict(
    dataset="cifar10",
    arch="simple_cnn",
    ensemble="batch",
    ensemble_size=2,
    epochs=1,
    batch_size=32,
    lr=3e-3,
    num_threads=2,
    robustness=False,
    device="cpu",
    # fp32 unless a test asks for more: auto is bf16 on a CPU with bf16 units, and these tests
    # compare layouts, compile and resumes at fp32 tolerances
    precision="fp32",
)
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "test_ece", "test_kl")
CUDA = torch.device("cuda")
CPU = torch.device("cpu")


@pytest.fixture
def aot_eager(monkeypatch):
    """torch.compile's tracing (Dynamo) and autograd graphs (AOTAutograd) without inductor's
    C++ code generation, which takes minutes on 2 cores: the parts that can break with
    compile (custom autograd Functions, in-place buffer updates, IVON swapping p.data, the
    eval-mode graph, state_dict keys) run as under inductor."""
    monkeypatch.setattr(R, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def run(data, **changes):
    """train() on the synthetic data, as (history, checkpoint states)."""
    cfg = TrialConfig.from_dict({**TINY, **changes})
    states = []
    history = train(cfg, data=data, reporter=lambda m, s: states.append(copy.deepcopy(s)))
    return history, states


def close(a: dict, b: dict, rel: float, abs_: float) -> None:
    for k in METRICS:
        assert a[k] == pytest.approx(b[k], rel=rel, abs=abs_), k


# ------------------------------------------------------------------------------------------
# the fields
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, bad, match",
    [
        ("precision", "fp16", r"precision='fp16' is not allowed; choose one of \['auto', 'fp32'"),
        ("precision", "bfloat16", r"precision='bfloat16' is not allowed"),
        ("channels_last", True, r"channels_last=True is not allowed; choose one of \['auto', 'on'"),
        ("channels_last", "yes", r"channels_last='yes' is not allowed"),
        ("compile", "max-autotune", r"compile='max-autotune' is not allowed; choose one of"),
        ("compile", None, r"compile=None is not allowed"),
    ],
)
def test_bad_values_are_refused(field, bad, match):
    with pytest.raises(ConfigError, match=match):
        TrialConfig.from_dict({field: bad})


def test_defaults_are_auto_and_good_values_pass():
    cfg = TrialConfig()
    assert (cfg.precision, cfg.channels_last, cfg.compile) == ("auto", "auto", "auto")
    for p in ("auto", "fp32", "bf16"):
        for s in ("auto", "on", "off"):
            TrialConfig.from_dict({"precision": p, "channels_last": s, "compile": s})


# ------------------------------------------------------------------------------------------
# resolution per device
# ------------------------------------------------------------------------------------------
GPU = Capabilities(bf16=True, no_compile=None)  # an Ampere-or-newer GPU with triton
OLD_GPU = Capabilities(bf16=False, no_compile=None)  # e.g. a V100 or T4
NO_TRITON = Capabilities(bf16=True, no_compile="no triton here")


def resolved(device, caps, **fields):
    rt = resolve_runtime(TrialConfig.from_dict(fields), device, caps)
    return rt.precision, rt.channels_last, rt.compile


def test_auto_resolves_per_device():
    assert resolved(CUDA, GPU) == ("bf16", True, True)
    assert resolved(CPU, Capabilities(bf16=True, no_compile=None)) == ("fp32", False, False)
    assert resolved(CUDA, OLD_GPU) == ("fp32", True, True)  # no native bf16: fp32
    assert resolved(CUDA, NO_TRITON) == ("bf16", True, False)  # cannot compile: off


def test_explicit_values_override_auto():
    assert resolved(CUDA, GPU, precision="fp32", channels_last="off", compile="off") == (
        "fp32",
        False,
        False,
    )
    cpu = Capabilities(bf16=True, no_compile=None)
    assert resolved(CPU, cpu, precision="bf16", channels_last="on", compile="on") == (
        "bf16",
        True,
        True,
    )


def test_this_machines_cpu_resolves_by_its_bf16_units():
    units = R.cpu_bf16_units()
    rt = resolve_runtime(TrialConfig(), CPU)
    if units:
        assert (rt.precision, rt.channels_last, rt.compile) == ("bf16", True, False)
        line = (
            f"runtime: device=cpu precision=bf16 (auto: {units} runs bf16 matmuls natively) "
            "channels_last=on (auto: with bf16) "
        )
    else:
        assert (rt.precision, rt.channels_last, rt.compile) == ("fp32", False, False)
        line = (
            "runtime: device=cpu precision=fp32 (auto: no AMX or AVX512-BF16 on this CPU) "
            "channels_last=off (auto: with fp32) "
        )
    line += f"compile=off (auto: {R.COMPILE_ON_CPU})"
    assert rt.describe(TrialConfig()) == line
    assert R.capabilities(CPU).bf16  # CPU autocast runs bf16 everywhere: allowed


def test_what_cannot_run_is_refused():
    with pytest.raises(ConfigError, match=r"precision='bf16': this cuda device has no native"):
        resolved(CUDA, OLD_GPU, precision="bf16")
    with pytest.raises(ConfigError, match=r"compile='on': no triton here; allowed: 'auto' or"):
        resolved(CUDA, NO_TRITON, compile="on")
    # a machine without CUDA: capabilities say so, and bf16 on "cuda" is refused
    if not torch.cuda.is_available():
        assert not R.capabilities(CUDA).bf16


# ------------------------------------------------------------------------------------------
# training and evaluation under each
# ------------------------------------------------------------------------------------------
def test_bf16_trains_with_finite_metrics_close_to_fp32(data):
    fp32, _ = run(data, precision="fp32", epochs=2)
    bf16, _ = run(data, precision="bf16", epochs=2)
    for h in bf16:
        assert all(math.isfinite(h[k]) for k in METRICS)
    close(bf16[-1], fp32[-1], rel=0.05, abs_=0.05)
    assert bf16[-1]["test_loss"] != fp32[-1]["test_loss"]  # bf16 did run


def test_metrics_see_fp32_probabilities_under_bf16(data):
    cfg = TrialConfig.from_dict({**TINY, "precision": "bf16"})
    rt = resolve_runtime(cfg, CPU)
    model = model_for_config(cfg, 4, in_channels=3)
    x = torch.randn(5, 3, 16, 16)
    with rt.autocast():
        assert model(x).dtype in (torch.bfloat16, torch.float32)
    probs = predict_probs(model, None, x, cfg, rt.autocast)
    assert probs.dtype == torch.float32 and probs.shape == (2, 5, 4)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 5))
    opt, _ = build_optimizer(model, cfg, 80, 3)
    loss, logits = train_step(model, opt, x, torch.arange(5) % 4, cfg, None, rt.autocast)
    assert math.isfinite(loss) and logits.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


def test_channels_last_gives_the_numbers_of_contiguous(data):
    contiguous, states_a = run(data, channels_last="off")
    nhwc, states_b = run(data, channels_last="on")
    close(nhwc[0], contiguous[0], rel=1e-4, abs_=1e-5)
    w = states_b[0]["model"]["blocks.conv1.conv.weight"]
    assert w.is_contiguous(memory_format=torch.channels_last)  # the model did run NHWC
    assert states_b[0]["runtime"]["channels_last"] is True


def test_every_epoch_reports_its_device_and_what_auto_resolved_to(data):
    # `auto` everywhere (the device too, where it is the CPU: tests/core/test_cuda.py checks a
    # GPU's), then explicit values: each epoch says what ran
    device = "cpu" if torch.cuda.is_available() else "auto"
    auto, states = run(data, device=device, precision="auto", epochs=2)
    units = R.cpu_bf16_units() is not None  # bf16 + channels_last where the CPU has them
    for h in auto:
        assert h[C.DEVICE_NAME] == cpu_model() and h[C.RESOLVED_DEVICE] == "cpu"
        assert h[C.RESOLVED_PRECISION] == ("bf16" if units else "fp32")
        assert h[C.RESOLVED_CHANNELS_LAST] is units and h[C.RESOLVED_COMPILE] is False
    assert states[-1]["runtime"]["precision"] == auto[-1][C.RESOLVED_PRECISION]
    (chosen,), _ = run(data, precision="bf16", channels_last="on")
    assert chosen[C.RESOLVED_PRECISION] == "bf16" and chosen[C.RESOLVED_CHANNELS_LAST] is True
    assert set(C.RUNTIME_KEYS) <= set(chosen) and set(C.REPORT_KEYS) <= set(chosen)


def test_compile_gives_eager_numbers_and_checkpoints_move_between_the_two(data, aot_eager):
    eager, eager_states = run(data, compile="off", epochs=2)
    compiled, compiled_states = run(data, compile="on", epochs=2)
    for c, e in zip(compiled, eager, strict=True):
        close(c, e, rel=1e-4, abs_=1e-5)
    sa, sb = eager_states[0]["model"], compiled_states[0]["model"]
    assert list(sb) == list(sa)  # the uncompiled module's keys: no `_orig_mod.` prefix
    for k in sa:
        assert torch.allclose(sa[k].float(), sb[k].float(), rtol=1e-4, atol=1e-5), k
    assert compiled_states[0]["runtime"]["compile"] is True
    # resumed across: an eager checkpoint into a compiled run and the other way round
    cfg = TrialConfig.from_dict({**TINY, "epochs": 2})
    into_compiled = train(cfg.replace(compile="on"), data=data, resume_state=eager_states[0])
    into_eager = train(cfg.replace(compile="off"), data=data, resume_state=compiled_states[0])
    assert [h["epoch"] for h in into_compiled] == [2] == [h["epoch"] for h in into_eager]
    close(into_compiled[0], eager[1], rel=1e-4, abs_=1e-5)
    close(into_eager[0], eager[1], rel=1e-4, abs_=1e-5)


def test_a_channels_last_checkpoint_resumes_a_contiguous_run(data):
    full, _ = run(data, channels_last="off", epochs=2)
    _, nhwc_states = run(data, channels_last="on", epochs=2)
    cfg = TrialConfig.from_dict({**TINY, "epochs": 2, "channels_last": "off"})
    resumed = train(cfg, data=data, resume_state=nhwc_states[0])
    close(resumed[0], full[1], rel=1e-4, abs_=1e-5)


def test_a_state_dict_saved_from_a_compiled_module_loads(aot_eager):
    cfg = TrialConfig.from_dict(TINY)
    model = model_for_config(cfg, 4, in_channels=3)
    compiled = torch.compile(model, backend="aot_eager")
    prefixed = compiled.state_dict()
    assert all(k.startswith(R.COMPILED_PREFIX) for k in prefixed)
    other = model_for_config(cfg.replace(seed=1), 4, in_channels=3)
    load_model_state(other, prefixed)
    load_model_state(torch.compile(other, backend="aot_eager"), model.state_dict())
    assert unwrap(compiled) is model
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


IVON = dict(optimizer="ivon", lr=0.05, ivon_test_samples=2)


@pytest.mark.parametrize(
    "changes",
    [
        dict(precision="bf16"),
        dict(precision="bf16", channels_last="on"),
        dict(compile="on"),
        dict(precision="bf16", channels_last="on", compile="on"),  # what auto is on CUDA
    ],
    ids=["bf16", "bf16-channels_last", "compile", "all-three"],
)
def test_ivon_trains_an_epoch_under_each(data, aot_eager, changes):
    history, states = run(data, **IVON, **changes)  # sampled training and test predictions
    assert all(math.isfinite(history[0][k]) for k in METRICS)
    assert states[0]["optimizer"]["ivon_current_step"] == 3  # 80 images / 32 per step
    assert not any(k.startswith(R.COMPILED_PREFIX) for k in states[0]["model"])
    if changes.get("compile") == "on":  # the compiled graph sees IVON's sampled weights
        eager, _ = run(data, **IVON, **{**changes, "compile": "off"})
        # bf16: the traced graph's decomposed ops round differently from eager's oneDNN
        # kernels; the members' disagreement (test_kl) moved 3.4% on an AVX512-BF16 CPU, so
        # bf16's tolerance against fp32 (5%) applies
        tol = 5e-2 if changes.get("precision") == "bf16" else 1e-4
        close(history[0], eager[0], rel=tol, abs_=tol / 10)


def test_resume_under_bf16_and_channels_last_with_ivon_equals_an_uninterrupted_run(data):
    changes = dict(IVON, precision="bf16", channels_last="on", epochs=2)
    full, states = run(data, **changes)
    cfg = TrialConfig.from_dict({**TINY, **changes})
    resumed = train(cfg, data=data, resume_state=states[0])
    assert [h["epoch"] for h in resumed] == [2]
    close(resumed[0], full[1], rel=1e-5, abs_=1e-6)


@pytest.mark.slow
def test_inductor_compile_trains_like_eager(data):
    """The real inductor backend (C++ code generation: minutes on 2 cores, hence slow)."""
    no = R.capabilities(CPU).no_compile
    if no is not None:
        pytest.skip(no)
    torch._dynamo.reset()
    eager, _ = run(data, compile="off")
    compiled, states = run(data, compile="on")
    close(compiled[0], eager[0], rel=1e-3, abs_=1e-4)
    assert not any(k.startswith(R.COMPILED_PREFIX) for k in states[0]["model"])


@pytest.mark.parametrize(
    "changes",
    [
        dict(ensemble="single", ensemble_size=1),
        dict(ensemble="batch", norm="member"),
        dict(ensemble="batch", norm="none"),
        dict(ensemble="deep"),
        dict(arch="vgg11_share", sharing_network="early", sharing_ensemble="early"),
        dict(alpha=None, gamma=None),
        dict(gamma=None),
    ],
    ids=["single", "member-norm", "no-norm", "deep", "vgg11_share-early", "frozen", "no-gamma"],
)
def test_every_kind_of_model_runs_in_channels_last_and_bf16(changes):
    """Forward and backward of each ensemble kind, norm and sharing (one step, 32x32 input).
    channels_last gives the contiguous numbers, compared in float64: in fp32 the rounding of
    the NHWC kernels, amplified by BatchNorm over 4 images, moves gradients that are zero in
    exact arithmetic (a conv bias before a norm) by more than any useful tolerance. bf16
    autocast gives finite numbers close to fp32's."""
    cfg = TrialConfig.from_dict({**TINY, **changes})
    torch.manual_seed(0)
    model = model_for_config(cfg, 4, in_channels=3)
    x = torch.randn(4, 3, 32, 32)

    def forward_backward(m, rt, x):
        m.zero_grad(set_to_none=True)
        with rt.autocast():
            out = m(rt.batch(x))
        out.float().square().mean().backward()
        return out.float(), [p.grad.clone() for p in m.parameters()]

    plain = resolve_runtime(cfg, CPU)
    ref, ref_grads = forward_backward(copy.deepcopy(model).double(), plain, x.double())
    nhwc = resolve_runtime(cfg.replace(channels_last="on"), CPU)
    nhwc_model = R.prepare_model(copy.deepcopy(model).double(), nhwc)
    convs = [p for p in nhwc_model.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    out, grads = forward_backward(nhwc_model, nhwc, x.double())
    assert torch.allclose(out, ref, rtol=1e-9, atol=1e-12)
    for g, r in zip(grads, ref_grads, strict=True):
        assert torch.allclose(g, r, rtol=1e-7, atol=1e-12)
    fp32_model, bf16_model = copy.deepcopy(model), copy.deepcopy(model)
    fp32, _ = forward_backward(fp32_model, plain, x)
    bf16 = resolve_runtime(cfg.replace(precision="bf16"), CPU)
    out, grads = forward_backward(bf16_model, bf16, x)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads)
    assert (out - fp32).abs().max() <= 0.05 * fp32.abs().max() + 1e-3
    # running statistics stay fp32 and close to fp32's; the eval pass runs too
    for (name, a), b in zip(bf16_model.named_buffers(), fp32_model.buffers(), strict=True):
        assert a.dtype == b.dtype, name
        if a.is_floating_point():
            assert torch.allclose(a, b, rtol=0.05, atol=0.02), name
    bf16_model.eval()
    with bf16.autocast():
        assert torch.isfinite(bf16_model(x)).all()


@pytest.mark.parametrize(
    "changes",
    [dict(ensemble="batch", norm="member"), dict(ensemble="deep")],
    ids=["member-norm", "deep"],
)
def test_other_kinds_of_model_compile(aot_eager, changes):
    """Compiled forward and backward equal eager's for the kinds the training runs above do
    not compile (those train the fused BatchEnsemble conv-norm-ReLU)."""
    cfg = TrialConfig.from_dict({**TINY, **changes, "compile": "on"})
    torch.manual_seed(0)
    model = model_for_config(cfg, 4, in_channels=3)
    x = torch.randn(4, 3, 16, 16)
    outs, grads = [], []
    for m in (
        copy.deepcopy(model),
        R.prepare_model(copy.deepcopy(model), resolve_runtime(cfg, CPU)),
    ):
        out = m(x)
        out.square().mean().backward()
        outs.append(out.detach())
        grads.append([p.grad for p in unwrap(m).parameters()])
    assert torch.allclose(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    for g, r in zip(*grads, strict=True):
        assert torch.allclose(g, r, rtol=1e-3, atol=1e-4)


def test_robustness_evaluation_runs_under_bf16_and_channels_last(data):
    history, _ = run(
        data,
        precision="bf16",
        channels_last="on",
        robustness=True,
        corruption_subset=8,
        ood_dataset="none",
    )
    assert math.isfinite(history[0]["corrupt_acc"]) and math.isfinite(history[0]["corrupt_loss"])


# ----------------------------------------------------------------------------------------------
# retain_freed_memory
# ----------------------------------------------------------------------------------------------
_FAULTS = """
import json, resource, torch
from core.runtime import retain_freed_memory

def faulting(n=10):
    # how many of n allocations of a 48 MiB activation (freed and allocated again, as in
    # every training step) page-faulted it in: over 1,000 of its 12,288 pages
    count = 0
    for _ in range(n):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(12 * 2**20)
        count += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0 > 1000
    return count

faulting(2)
before = faulting()
took = retain_freed_memory()
faulting(10)  # the heap grows until it holds the block and the small allocations around it
print(json.dumps({"before": before, "took": took, "again": retain_freed_memory(),
                  "after": faulting()}))
"""


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_retained_freed_memory_is_reused_without_page_faults():
    """glibc unmaps a freed 48 MiB block and page-faults a new one in (12,288 pages of 4 KiB)
    every time; after retain_freed_memory the same allocation reuses the heap's pages. In a
    fresh process: the setting is process-wide."""
    import json
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-c", _FAULTS], capture_output=True, text=True, check=True
    )
    out = json.loads(res.stdout)
    assert out["took"] is True and out["again"] is True  # idempotent
    assert out["before"] == 10  # a page fault per page, every time
    assert out["after"] <= 1  # at most one more growth of the heap
