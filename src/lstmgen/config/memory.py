"""Whether a model fits this machine, judged from its config before anything is allocated.

A size typed by mistake (`--hidden 100000`, or a damaged config.json) must be a one-line
refusal that says how much it would need and how much there is, not an allocation failure
deep in PyTorch. The estimates are deliberately low (what cannot be avoided), so that only
what cannot fit is refused. No PyTorch here: the device's memory is passed in.
"""

from __future__ import annotations

import os
from pathlib import Path

from lstmgen.config.model import ModelConfig
from lstmgen.errors import LstmgenError

FLOAT_BYTES = 4  # parameters and activations are float32 (bf16 autocast keeps fp32 weights)
# Training keeps the weights, their gradients and AdamW's two moments.
TRAINING_COPIES = 4


def weights_bytes(model: ModelConfig) -> int:
    """The weights alone: what loading a run to generate or evaluate needs."""
    return FLOAT_BYTES * model.parameter_count()


def training_bytes(model: ModelConfig, batch_size: int, seq_len: int) -> int:
    """Weights, gradients and optimizer state, and what one step keeps for the backward pass:
    per position, the token's embedding, each layer's gates and states, and the logits with
    their softmax and gradient."""
    gates = 4 if model.cell == "lstm" else 3
    per_position = (
        model.embedding + model.layers * model.hidden * (gates + 2) + 3 * model.vocab_size
    )
    step = FLOAT_BYTES * batch_size * seq_len * per_position
    return TRAINING_COPIES * weights_bytes(model) + step


def machine_memory_bytes() -> int | None:
    """The memory this process may use: the machine's (MemTotal), or its container's limit
    where that is lower; None where neither can be read."""
    total = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if total is None:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # not on this system
            return None
    for limit_file in ("memory.max", "memory/memory.limit_in_bytes"):  # cgroup v2, v1
        try:
            limit = int(Path("/sys/fs/cgroup", limit_file).read_text(encoding="ascii"))
        except (OSError, ValueError):  # absent, or "max"
            continue
        total = min(total, limit)
    return total


def gigabytes(count: int) -> str:
    """Bytes as '1.3 GB' (or '4,096 GB' for absurd sizes, '0.02 GB' for small ones)."""
    value = count / 1e9
    if value >= 1e6:
        return f"{value:.3g} GB"
    return f"{value:,.0f} GB" if value >= 100 else f"{value:.2g} GB"


def describe(model: ModelConfig) -> str:
    """'a 2×256 LSTM of 1,234,567 parameters' (scientific notation when absurd)."""
    count = model.parameter_count()
    shown = f"{count:,}" if count < 10**15 else f"{count:.3g}"
    return f"a {model.layers}×{model.hidden} {model.cell.upper()} of {shown} parameters"


def refuse_training_beyond(
    model: ModelConfig,
    batch_size: int,
    seq_len: int,
    *,
    available: int | None,
    where: str = "this machine's memory",
) -> None:
    """A one-line error when training this model cannot fit in `available` bytes."""
    needed = training_bytes(model, batch_size, seq_len)
    if available is None or needed <= available:
        return
    vocabulary = "" if model.vocab_size else " before its vocabulary is counted"
    raise LstmgenError(
        f"{describe(model)} needs about {gigabytes(needed)} to train{vocabulary} (weights, "
        f"gradients, optimizer state and one step of --batch-size {batch_size} × --seq-len "
        f"{seq_len}), more than {where} ({gigabytes(available)}); choose a smaller --hidden "
        "or --layers (or --batch-size, --seq-len)"
    )


def refuse_loading_beyond(model: ModelConfig, name: str, *, available: int | None) -> None:
    """A one-line error when a run's weights alone cannot fit in `available` bytes."""
    needed = weights_bytes(model)
    if available is None or needed <= available:
        return
    raise LstmgenError(
        f"{name} describes {describe(model)}, which needs about {gigabytes(needed)} to load, "
        f"more than this machine's memory ({gigabytes(available)}); load it on a bigger "
        "machine, or restore config.json if it is damaged"
    )
