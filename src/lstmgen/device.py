"""Where a model runs: the device, and the precision its training steps use there."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import torch

from lstmgen.errors import LstmgenError


def resolve_device(name: str) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LstmgenError(
            f"--device {name!r} is not a device; use auto, cpu, cuda, cuda:1 or mps"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LstmgenError(
            "--device cuda was asked for but no CUDA GPU is visible; use --device cpu"
        )
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise LstmgenError("--device mps was asked for but MPS is not available; use --device cpu")
    return device


# `--precision auto` on a CPU that has bf16 natively: bf16. benchmarks/cpu_bf16.py on an AMD
# EPYC with avx512_bf16 (2 minutes a run, one core each): 1.38x fp32's tokens/s at 2x192 and
# 1.49x at 2x512, and lower held-out bits/char at equal time (-0.035 and -0.123; BENCHMARKS.md,
# issue 25). LSTMGEN_CPU_BF16=0 keeps fp32 (the test suite sets it: the same numbers on every
# machine).
CPU_BF16_BY_DEFAULT = os.environ.get("LSTMGEN_CPU_BF16", "1") != "0"
# The flags of CPUs whose oneDNN runs bf16 natively; elsewhere it emulates (slower than fp32)
# or has no bf16 LSTM primitive at all ("could not create a primitive descriptor").
NATIVE_BF16_FLAGS = {
    "x86_64": {"avx512_bf16", "amx_bf16"},
    "amd64": {"avx512_bf16", "amx_bf16"},
    "aarch64": {"bf16"},
    "arm64": {"bf16"},
}


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none: macOS, Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):  # x86, ARM
            return set(line.partition(":")[2].split())
    return set()


def _bf16_step(device: torch.device) -> None:
    """One tiny LSTM forward and backward under bf16 autocast (raises where a kernel is missing);
    on its own random stream, so that it never shifts a seeded run."""
    with torch.random.fork_rng(devices=[]):
        lstm = torch.nn.LSTM(8, 16, batch_first=True).to(device)
        head = torch.nn.Linear(16, 4).to(device)
        x = torch.randn(2, 3, 8, device=device)  # (B, T, E)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            out, _ = lstm(x)  # (B, T, H)
            loss = head(out).float().square().mean()
        loss.backward()


@functools.cache
def cpu_bf16_missing() -> str | None:
    """Why this CPU cannot train in bf16, or None where it can: its flags, then one tiny LSTM
    step under bf16 autocast (checked once per process)."""
    native = NATIVE_BF16_FLAGS.get(platform.machine().lower())
    flags = cpu_flags()
    if native and flags and not flags & native:
        return f"this CPU has no bf16 instructions ({' or '.join(sorted(native))})"
    if not torch.backends.mkldnn.is_available():
        return "this PyTorch was built without oneDNN"
    try:
        _bf16_step(torch.device("cpu"))
    except RuntimeError as e:  # oneDNN: "could not create a primitive descriptor ..."
        return f"oneDNN cannot run a bf16 LSTM here ({str(e).splitlines()[0][:120]})"
    return None


def _cuda_bf16(*, emulated: bool) -> bool:
    """Whether the GPU computes in bf16 (natively, or also by emulation where allowed)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=emulated)
    except TypeError:  # an older PyTorch: native bf16 only, nothing to leave out
        return torch.cuda.is_bf16_supported()


def mixed_precision(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The dtype training steps autocast to: bf16, or None for fp32. auto: bf16 on CUDA GPUs
    that have it natively (cuDNN LSTM in bf16), on CPUs only once CPU_BF16_BY_DEFAULT says so
    (and the CPU has it); fp32 elsewhere. bf16 where the device lacks it: a one-line error."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        if precision == "auto":  # native only: an emulated bf16 (before Ampere) is slower
            return torch.bfloat16 if _cuda_bf16(emulated=False) else None
        missing = None if _cuda_bf16(emulated=True) else "this GPU has no bf16"
    elif device.type == "cpu":
        if precision == "auto" and not CPU_BF16_BY_DEFAULT:
            return None
        missing = cpu_bf16_missing()
    else:
        if precision == "auto":
            return None
        try:
            _bf16_step(device)
            missing = None
        except RuntimeError:
            missing = f"{device.type} cannot run a bf16 LSTM step"
    if missing is None:
        return torch.bfloat16
    if precision == "auto":
        return None
    raise LstmgenError(f"--precision bf16: {missing}; use --precision fp32")


def autocast_for(device: torch.device, precision: str = "auto") -> torch.autocast:
    """The autocast context training steps run in: enabled only where mixed_precision says so."""
    dtype = mixed_precision(device, precision)
    return torch.autocast(
        device_type=device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None
    )
