"""Divergence: when the loss stops being finite, or jumps for several steps in a row, training
goes back to the last checkpoint's state (kept in memory) and halves the learning rate.

A single high-loss batch is only skipped; after MAX_ROLLBACKS roll-backs without getting past
a checkpoint, the run stops and asks for a lower --lr (its checkpoint on disk stays whole).
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import torch

from lstmgen.config import TrainConfig
from lstmgen.errors import LstmgenError
from lstmgen.training.distributed import Peers
from lstmgen.training.progress import Progress

JUMPS_BEFORE_ROLLBACK = 3  # a single high-loss batch is skipped; three in a row mean divergence
MAX_ROLLBACKS = 8  # after this many, the run stops and asks for a lower --lr


class Divergence:
    """Judges each step's loss, and keeps the state to roll back to when training diverges."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        config: TrainConfig,
        peers: Peers,
    ):
        self.model, self.optimizer, self.config, self.peers = model, optimizer, config, peers
        self.good: dict | None = None  # the last checkpoint's state, kept in memory

    def snapshot(self, progress: Progress, state) -> None:
        """Keep the state of the last checkpoint in memory, to return to if the loss diverges.

        Called after each regular checkpoint: training got past the last roll-back's trouble,
        so the count of roll-backs starts again (the lowered learning rate stays).
        """
        if self.good is not None and progress.step > self.good["progress"].step:
            progress.rollbacks = 0
        state = state if isinstance(state, tuple) else (state,) if state is not None else ()
        self.good = {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "progress": replace(progress),
            "state": tuple(s.clone() for s in state),
            "rng": torch.get_rng_state(),
        }

    def check(self, progress: Progress, loss: torch.Tensor, grad_norm: torch.Tensor) -> str:
        """ "ok", "skip" (this batch's loss jumped: do not apply it) or why training diverged."""
        p = progress
        # one device sync per step; the loss is the mean over the processes, so that all of
        # them judge alike (the gradient norm is already the same everywhere)
        value, norm = self.peers.mean(loss.detach()), float(grad_norm)
        if not math.isfinite(value) or not math.isfinite(norm):
            return f"the loss became {value:.4g} (gradient norm {norm:.4g})"
        if (
            p.loss_ema is not None
            and p.step > self.config.warmup_steps
            and value > 2 * p.loss_ema + 1
        ):
            p.jumps += 1
            if p.jumps >= JUMPS_BEFORE_ROLLBACK:
                return (
                    f"the loss jumped to {value:.3f} nats from about {p.loss_ema:.3f} "
                    f"for {p.jumps} steps in a row"
                )
            return "skip"
        p.jumps = 0
        p.loss_ema = value if p.loss_ema is None else 0.98 * p.loss_ema + 0.02 * value
        return "ok"

    def roll_back(self, progress: Progress, problem: str) -> tuple[object, str]:
        """Restore the weights, optimizer, random state and position of the last snapshot and
        halve the learning rate; return the recurrent state to go on with and what was done."""
        p, good = progress, self.good
        at = p.step
        if p.rollbacks >= MAX_ROLLBACKS:
            raise LstmgenError(
                f"training diverged at step {at:,} ({problem}) after {p.rollbacks} roll-backs; "
                "the last checkpoint is intact: continue it with a lower peak rate, "
                f"e.g. lstmgen train --resume RUN --lr {self.config.lr / 4:g}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.model.load_state_dict(good["model"])
        self.optimizer.load_state_dict(copy.deepcopy(good["optimizer"]))
        torch.set_rng_state(good["rng"])
        state = tuple(s.clone() for s in good["state"])
        old = good["progress"]
        p.step, p.epoch, p.batch, p.tokens = old.step, old.epoch, old.batch, old.tokens
        p.lr_scale, p.rollbacks = p.lr_scale / 2, p.rollbacks + 1
        p.loss_ema, p.jumps = old.loss_ema, 0
        message = (
            f"{problem} at step {at:,}: rolled back to step {p.step:,} "
            f"and halved the learning rate (now {p.lr_scale:g} × the schedule)"
        )
        return (None if not state else state if len(state) == 2 else state[0]), message
