"""How one trial computes on its device: precision, memory format and torch.compile.

`resolve_runtime(cfg, device)` turns TrialConfig's `precision`, `channels_last` and `compile`
('auto' or an explicit choice) into a `Runtime` for that device, once per trial; training
(`core.train.train`, so the Ray trainable and `python -m core.train` too) and the throughput
timing (`core.train.time_train_steps`) all get theirs from `core.train._setup`, which calls
this. What 'auto' resolves to, and why, is next to each field in `core/config.py`:

  field           auto on CUDA                          auto on CPU
  precision       bf16 (fp32 on a GPU without bf16)     bf16 with native bf16 units, else fp32
  channels_last   on                                    on with bf16, else off
  compile         on (off without triton)               off (measured not to pay in a trial)

"Native bf16 units" on a CPU: AMX tiles (Intel Sapphire Rapids and newer) or AVX512-BF16
(Cooper Lake, AMD Zen 4 and newer), detected from what torch reports (`cpu_bf16_units`),
never assumed; oneDNN runs bf16 convolutions and matmuls on them at 2-4x fp32's rate, fastest
in channels_last (a training step 1.4-2.6x fp32's on an AVX512-BF16 EPYC; benchmarks/README.md,
"bf16 on the CPU"). A CPU without them emulates bf16, slower than fp32, so auto stays fp32
there. The runtime line says which units decided.

An explicit value that cannot run on the device is refused (`core.errors.refusal`): bf16 on
a GPU without native bf16, compile=on without the inductor's compiler (triton on CUDA, a C++
compiler on CPU). bf16 on a CPU without bf16 units is allowed: torch's CPU autocast runs it
everywhere (slowly), which lets the tests exercise the bf16 path on any machine.

* bf16: `Runtime.autocast()` wraps the forward pass of training and evaluation; the loss is
  taken on the logits cast to fp32, probabilities are cast to fp32 before any metric
  (`core.optim.predict_probs`), and weights, gradients and optimizer state (IVON's too) stay
  fp32. bf16 has fp32's exponent range, so no gradient scaling.
* channels_last: the model's 4-d weights (a deep ensemble's 5-d conv weights stay as they
  are) and every input batch (`Runtime.batch`) in torch.channels_last. The numbers are those
  of the contiguous layout (to float rounding). IVON writes its sampled and updated weights
  back contiguous (ivon-opt flattens them); the batches stay channels_last, which is what
  selects the NHWC convolution kernels.
* compile: `prepare_model` returns `torch.compile(model)`; `unwrap` gives back the original
  module, whose state_dict the checkpoints hold (no `_orig_mod.` prefix), so checkpoints of
  compiled and uncompiled trials are interchangeable. `load_model_state` also accepts a
  state_dict saved from a compiled module.

`Runtime.describe()` is the one line `core.train.train` prints at the start of each trial
(and the checkpoint state keeps `Runtime.as_dict()` under "runtime").
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import platform
import shutil
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from core.config import TrialConfig
from core.errors import ConfigError, refusal

__all__ = [
    "COMPILED_PREFIX",
    "Capabilities",
    "Runtime",
    "capabilities",
    "clock",
    "cpu_bf16_units",
    "load_model_state",
    "prepare_model",
    "resolve_runtime",
    "retain_freed_memory",
    "unwrap",
]

# The inductor backend of torch.compile; the tests swap in "aot_eager" (same tracing and
# autograd, no code generation) where compiling C++ would take minutes.
COMPILE_BACKEND = "inductor"
COMPILE_ON_CPU = "CPU: measured not to pay within a trial"  # why auto does not compile there
# What torch.compile's wrapper (OptimizedModule) puts before every state_dict key.
COMPILED_PREFIX = "_orig_mod."


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_retained = False


def retain_freed_memory() -> bool:
    """Keep the memory the process frees for its own reuse instead of handing it back to the
    OS; True where that took effect (glibc), False elsewhere (a no-op).

    glibc serves blocks over its mmap threshold (128 KiB, rising to at most 32 MiB) with new
    mappings that it unmaps on free, and trims the heap's free top beyond a threshold. A
    training step frees its activations and allocates them again in the next step, so each
    step page-faults them back in, page by page: on CPU 3,000-5,000 faults per simple_cnn
    step and 80,000-90,000 per vgg11 step, whose steps ran 14-23% faster without them
    (benchmarks/README.md, "Freed memory"). With mmap'ed blocks and trimming off, the next
    step reuses the same pages. The cost: the process keeps its peak heap, which a training
    loop reaches again every step anyway. Process-wide and idempotent.
    """
    global _retained
    if _retained:
        return True
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # mmap'ed blocks off (every block from the reusable heap), then no trimming (the
    # threshold is an int: 2 GiB of free heap top kept)
    _retained = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return _retained


@dataclass(frozen=True)
class Capabilities:
    """What a device can run: bf16 (allowed), why torch.compile cannot (None: it can), and the
    native bf16 matrix units that make bf16 the fast choice (None: none, or not a CPU)."""

    bf16: bool
    no_compile: str | None
    bf16_units: str | None = None


def cpu_bf16_units() -> str | None:
    """This CPU's native bf16 matrix units as oneDNN uses them: 'AMX' (amx_bf16 tiles),
    'AVX512-BF16', or None. Read from torch's own CPU feature detection (cpuinfo), the
    same test oneDNN makes before choosing a bf16 kernel."""
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        return "AMX"
    if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "AVX512-BF16"
    return None


def capabilities(device: torch.device) -> Capabilities:
    """The capabilities of `device` on this machine."""
    if device.type == "cuda":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        no_compile = None
        if importlib.util.find_spec("triton") is None:
            no_compile = "torch.compile's inductor needs triton for CUDA (pip install triton)"
        return Capabilities(bf16=bool(bf16), no_compile=no_compile)
    no_compile = None
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        no_compile = "torch.compile's inductor needs a C++ compiler on CPU (g++ or clang++)"
    # CPU autocast runs bf16 everywhere (emulated without AVX512-BF16/AMX): always allowed,
    # auto only with the units
    return Capabilities(bf16=True, no_compile=no_compile, bf16_units=cpu_bf16_units())


@dataclass(frozen=True)
class Runtime:
    """The resolved way a trial computes: `precision` 'fp32' or 'bf16', and two switches."""

    device: torch.device
    precision: str
    channels_last: bool
    compile: bool
    # why 'auto' chose what it did, per field (only fields cfg left to auto); for the line
    # `describe` prints, not part of what the trial computes
    why: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context of a forward pass: bf16 autocast, or nothing for fp32."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """An input batch in the trial's memory format."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def as_dict(self) -> dict[str, str | bool]:
        return {
            "device": str(self.device),
            "precision": self.precision,
            "channels_last": self.channels_last,
            "compile": self.compile,
        }

    def describe(self, cfg: TrialConfig | None = None) -> str:
        """One line: the resolved values, each marked `(auto)` where cfg left it to auto."""

        why = dict(self.why)

        def part(name: str, value: str) -> str:
            if cfg is None or getattr(cfg, name) != "auto":
                return f"{name}={value}"
            return f"{name}={value} (auto" + (f": {why[name]}" if name in why else "") + ")"

        return "runtime: " + " ".join(
            [
                f"device={self.device}",
                part("precision", self.precision),
                part("channels_last", "on" if self.channels_last else "off"),
                part("compile", "on" if self.compile else "off"),
            ]
        )


def resolve_runtime(
    cfg: TrialConfig, device: torch.device, caps: Capabilities | None = None
) -> Runtime:
    """cfg's precision, channels_last and compile on `device` ('auto' resolved, explicit values
    checked against what the device can run). `caps` defaults to this machine's
    `capabilities(device)`; pass one to resolve for a device this machine lacks."""
    device = torch.device(device)
    caps = capabilities(device) if caps is None else caps
    cuda = device.type == "cuda"
    why: dict[str, str] = {}

    precision = cfg.precision
    if precision == "auto":
        if cuda:
            precision = "bf16" if caps.bf16 else "fp32"
            why["precision"] = "native bf16" if caps.bf16 else "no native bf16 on this GPU"
        else:
            precision = "bf16" if caps.bf16_units else "fp32"
            why["precision"] = (
                f"{caps.bf16_units} runs bf16 matmuls natively"
                if caps.bf16_units
                else "no AMX or AVX512-BF16 on this CPU"
            )
    elif precision == "bf16" and not caps.bf16:
        raise ConfigError(
            refusal(
                "precision",
                "bf16",
                "'auto' or 'fp32'",
                why=f"this {device.type} device has no native bf16 (a GPU older than Ampere)",
            )
        )

    channels_last = cfg.channels_last == "on"
    if cfg.channels_last == "auto":
        # on CPU, oneDNN's fastest bf16 convolutions are NHWC; fp32 gained little there
        channels_last = cuda or precision == "bf16"
        why["channels_last"] = "CUDA" if cuda else f"with {precision}"

    if cfg.compile == "on" and caps.no_compile is not None:
        raise ConfigError(refusal("compile", "on", "'auto' or 'off'", why=caps.no_compile))
    compile_ = cfg.compile == "on" or (cfg.compile == "auto" and cuda and caps.no_compile is None)
    if cfg.compile == "auto":
        # on CPU: the measurement is in TrialConfig.compile's comment (core/config.py)
        why["compile"] = (caps.no_compile or "CUDA") if cuda else COMPILE_ON_CPU
    return Runtime(device, precision, channels_last, compile_, tuple(why.items()))


def prepare_model(model: nn.Module, runtime: Runtime) -> nn.Module:
    """The model as the trial runs it: in channels_last if asked, compiled if asked (then the
    original module is `unwrap(result)`). Call after moving it to the device."""
    if runtime.channels_last:
        _to_channels_last(model)
    if runtime.compile:
        model = torch.compile(model, backend=COMPILE_BACKEND)
    return model


def _to_channels_last(model: nn.Module) -> None:
    """Every 4-d parameter and buffer in channels_last, in place. Not `model.to(memory_format=
    ...)`: that refuses the 5-d (members, out, in, kh, kw) weights of a deep ensemble's convs,
    which stay as they are (their grouped conv runs NHWC from its channels_last input)."""
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.dim() == 4:
                t.data = t.data.contiguous(memory_format=torch.channels_last)


def unwrap(model: nn.Module) -> nn.Module:
    """The original module of a compiled one (itself when not compiled)."""
    return getattr(model, "_orig_mod", model)


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a checkpoint's model state into `model` (compiled or not); a state_dict saved from
    a compiled module (`_orig_mod.` keys) loads too."""
    if state and all(k.startswith(COMPILED_PREFIX) for k in state):
        state = {k[len(COMPILED_PREFIX) :]: v for k, v in state.items()}
    unwrap(model).load_state_dict(state)


def clock(device: torch.device) -> float:
    """time.perf_counter() once `device` has finished the work queued on it (CUDA kernels run
    asynchronously: a clock read without waiting would time their launch, not their run)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
