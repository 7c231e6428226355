"""The learning-rate range test behind `train --lr-finder` (Smith 2017, as in fastai's lr_find).

A copy of the fresh model trains for a few dozen steps while the learning rate grows
geometrically from `low` to `high`; the loss, smoothed, falls and then blows up. The
suggestion is a tenth of the rate at the lowest smoothed loss: the fastest rate that is
still well clear of divergence. The model given is not changed.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from lstmgen.data.store import Documents
from lstmgen.errors import LstmgenError
from lstmgen.model import LSTMLanguageModel, detach_state
from lstmgen.training.batches import StreamBatches
from lstmgen.training.schedule import make_optimizer


@dataclass
class RangeTest:
    """What the range test saw: the rates tried, the smoothed loss at each, and the suggestion."""

    rates: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # smoothed training loss, nats/token
    suggestion: float = 0.0
    stopped_early: bool = False  # the loss blew up before the highest rate

    def table(self, rows: int = 8) -> list[tuple[float, float]]:
        """About `rows` (rate, smoothed loss) pairs spread over the test, for printing."""
        if not self.rates:
            return []
        spread = {round(i) for i in np.linspace(0, len(self.rates) - 1, min(rows, len(self.rates)))}
        picks = sorted(spread | {int(np.argmin(self.losses))})  # the lowest point always shows
        return [(self.rates[i], self.losses[i]) for i in picks]


def range_test(
    model: LSTMLanguageModel,
    tokens: np.ndarray,
    *,
    batch_size: int,
    seq_len: int,
    weight_decay: float,
    grad_clip: float,
    seed: int,
    steps: int = 100,
    low: float = 1e-4,
    high: float = 1.0,
    smoothing: float = 0.9,
    documents: Documents | None = None,
) -> RangeTest:
    """Train a copy of `model` for up to `steps` batches at rates from `low` to `high`; suggest a
    peak rate."""
    device = next(model.parameters()).device
    trial = copy.deepcopy(model).train()
    optimizer = make_optimizer(trial, low, weight_decay)
    batches = StreamBatches(tokens, batch_size, seq_len, seed=seed, epoch=0, documents=documents)
    # a tiny corpus is read again rather than cut the test short
    steps = max(2, min(steps, 4 * len(batches)))
    result, state, average, best = RangeTest(), None, 0.0, math.inf
    # Dropout draws here must not shift the real run's random streams (CPU and, on a GPU, CUDA).
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for i in range(steps):
            lr = low * (high / low) ** (i / (steps - 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            if i % len(batches) == 0:
                state = None  # back at the start of the text: no carried context
            x, y = (t.to(device) for t in batches.get(i % len(batches)))
            conditions = batches.conditions(i % len(batches))
            if conditions is not None:
                conditions = conditions.to(device)
            _, loss, state = trial(x, state, y, conditions=conditions)
            state = detach_state(state)
            value = float(loss.detach())
            if not math.isfinite(value):
                result.stopped_early = True
                break
            trial.objective(loss).backward()
            torch.nn.utils.clip_grad_norm_(trial.parameters(), grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            average = smoothing * average + (1 - smoothing) * value
            smoothed = average / (1 - smoothing ** (i + 1))  # bias-corrected running mean
            result.rates.append(lr)
            result.losses.append(smoothed)
            best = min(best, smoothed)
            if i > steps // 10 and smoothed > 1.5 * best:
                # well past the lowest: the rate is too high
                result.stopped_early = True
                break
    if not result.rates:
        raise LstmgenError(
            "the learning-rate range test got no finite loss even at the lowest rate; "
            "train with --lr instead"
        )
    result.suggestion = result.rates[int(np.argmin(result.losses))] / 10
    return result
