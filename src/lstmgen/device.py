"""Where a model runs: the device, and the precision its training steps use there."""

from __future__ import annotations

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


def mixed_precision(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA GPUs that have it (cuDNN LSTM in bf16); none elsewhere: oneDNN's
    CPU LSTM has no bf16 kernel on CPUs without AVX-512 bf16 ("could not create a primitive
    descriptor")."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast_for(device: torch.device) -> torch.autocast:
    """The autocast context training steps run in: enabled only where mixed_precision says so."""
    dtype = mixed_precision(device)
    return torch.autocast(
        device_type=device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None
    )
