"""The optimizer and the learning-rate schedule the trainer steps with (sizing and the range
test use the same optimizer, so that what they measure is what training does)."""

from __future__ import annotations

import math

import torch

from lstmgen.config import TrainConfig


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only (not embeddings, biases); the trainer's
    optimizer."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(0.9, 0.99),
    )


def lr_at(config: TrainConfig, step: int, progress: float, total_steps: int | None = None) -> float:
    """Linear warm-up, then cosine decay to min_lr_fraction by progress = 1.

    Warm-up lasts warmup_steps, or a tenth of the run when the run is shorter than that.
    """
    warmup = (
        min(config.warmup_steps, max(1, total_steps // 10)) if total_steps else config.warmup_steps
    )
    if warmup and step < warmup:
        return config.lr * (step + 1) / warmup
    floor = config.lr * config.min_lr_fraction
    return floor + 0.5 * (config.lr - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))
