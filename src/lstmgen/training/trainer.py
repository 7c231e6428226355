"""The training loop: Trainer, its progress record, the learning-rate schedule and the optimizer."""

from __future__ import annotations

import copy
import math
import signal
import time
from dataclasses import dataclass, replace

import torch

from lstmgen.config import TrainConfig
from lstmgen.device import autocast_for
from lstmgen.errors import LstmgenError
from lstmgen.metrics import evaluate_tokens
from lstmgen.model import detach_state
from lstmgen.threads import ThreadChooser
from lstmgen.training.batches import StreamBatches
from lstmgen.training.distributed import Peers


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


class StopFlag:
    """Ctrl-C / SIGTERM during training set a flag; the loop saves and stops between steps.

    A second Ctrl-C interrupts at once (the last checkpoint on disk stays whole).
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> StopFlag:
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class Progress:
    """Where a run stands; saved with every checkpoint."""

    step: int = 0
    epoch: int = 0  # completed epochs
    batch: int = 0  # next batch index within the current epoch
    tokens: int = 0  # training tokens seen
    elapsed_s: float = 0.0  # wall-clock of training so far, over all sessions
    best_val_nats: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    last_val_nats: float | None = None
    lr_scale: float = 1.0  # halved by each roll-back after the loss diverged
    rollbacks: int = 0  # roll-backs since training last got past a checkpoint
    loss_ema: float | None = None  # running training loss, against which a jump is judged
    jumps: int = 0  # consecutive steps skipped because their loss jumped
    curve_tokens: int | None = None  # held-out tokens a curve point evaluates (see curve_tokens)


# Without --eval-every, a run is evaluated at CURVE_POINTS evenly spaced points of its length
# (time or steps, whichever ends it), so every run draws a curve. Each point may cost at most
# CURVE_SHARE / CURVE_POINTS of the run's time: where the whole held-out split is dearer, a
# point evaluates curve_tokens spread over it (marked "val_sample" in metrics.jsonl), and only
# whole evaluations (epoch ends, the end, points that afford it) pick the best checkpoint.
CURVE_POINTS = 20
CURVE_SHARE = 0.05
EVAL_SPEED_UP = 2  # evaluating a token costs at most half of training on it (no backward)
MIN_CURVE_TOKENS = 4096

JUMPS_BEFORE_ROLLBACK = 3  # a single high-loss batch is skipped; three in a row mean divergence


MAX_ROLLBACKS = 8  # after this many, the run stops and asks for a lower --lr


class Trainer:
    """Trains a model on a token store, checkpointing into run_dir.

    The loop reads top to bottom; the `hooks` object gets told about steps,
    evaluations, epochs and checkpoints (printing, progress bar, samples).
    """

    def __init__(
        self,
        model,
        train_tokens,
        val_tokens,
        config: TrainConfig,
        *,
        hooks,
        save,
        device,
        threads: ThreadChooser | None = None,
        peers: Peers | None = None,
        unscored: tuple[int, ...] = (),
    ):
        self.model, self.config, self.hooks, self.save, self.device = (
            model,
            config,
            hooks,
            save,
            device,
        )
        self.train_tokens, self.val_tokens = train_tokens, val_tokens
        self.peers = peers or Peers()  # the other training processes under torchrun, if any
        self.step_model = self.peers.wrap(model)  # DDP under torchrun: gradients are averaged
        self.unscored = unscored  # control tokens: their predictions are not held-out loss
        self.optimizer = make_optimizer(model, config.lr, config.weight_decay)
        self.threads = threads or ThreadChooser()  # measured, unless --threads says
        self.progress = Progress()
        self.good: dict | None = None  # the last checkpoint's state, kept in memory (see _snapshot)
        self.state = None  # the recurrent state carried between batches
        self.stop_reason: str | None = None  # set by a hook to end the run at the next step
        self.next_curve_point = math.inf  # the fraction of the run of the next curve point
        self.last_eval_at = -1.0  # the fraction of the run at the last evaluation
        self.max_time_s, self.eval_every_s = config.max_time_s, config.eval_every_s
        self.save_every_s = config.save_every_s
        self.steps_per_epoch = len(self._epoch_batches(0))
        # The schedule's horizon: the epochs if given (max_steps then only stops early, as a
        # signal would), else max_steps; with neither, max_time alone paces the schedule.
        epochs = config.effective_epochs
        self.total_steps = epochs * self.steps_per_epoch if epochs else config.max_steps

    # ----- state for checkpoints -------------------------------------------------------------
    def _own_state(self) -> dict:
        """This process's recurrent state and random state (CPU tensors)."""
        state = self.state if self.state is not None else ()
        return {
            "rnn_state": [s.cpu() for s in (state if isinstance(state, tuple) else [state])],
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state()
            if self.device.type == "cuda"
            else torch.empty(0),
        }

    def trainer_state(self) -> dict | None:
        """The checkpoint's trainer state: rank 0's at the top, and under torchrun every
        rank's in "ranks" (gathered: every rank calls this; None on all but rank 0)."""
        own = self._own_state()
        ranks = self.peers.gather(own)
        if ranks is None:
            return None
        state = {
            "format": torch.tensor(1),
            "step": torch.tensor(self.progress.step),
            "optimizer": self.optimizer.state_dict(),
            **own,
        }
        if self.peers.size > 1:
            state["world_size"] = torch.tensor(self.peers.size)
            state["ranks"] = ranks
        return state

    def load_trainer_state(self, state: dict, progress: Progress) -> bool:
        """Continue from a checkpoint's state; False when it was made by another number of
        processes (the recurrent state then starts fresh: each process reads other streams)."""
        if int(state["step"]) != progress.step:
            raise LstmgenError(
                "the run's weights and trainer_state.pt are from different steps; resume is unsafe"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = progress
        saved_size = int(state.get("world_size", 1))
        if saved_size != self.peers.size:
            self.state = None
            if progress.batch >= self.steps_per_epoch:  # the new layout's epoch is shorter
                progress.epoch, progress.batch = progress.epoch + 1, 0
            return False
        own = state["ranks"][self.peers.rank] if saved_size > 1 else state
        rnn_state = [s.to(self.device) for s in own["rnn_state"]]
        self.state = (
            None if not rnn_state else (tuple(rnn_state) if len(rnn_state) == 2 else rnn_state[0])
        )
        torch.set_rng_state(own["torch_rng"])
        if self.device.type == "cuda" and own["cuda_rng"].numel():
            torch.cuda.set_rng_state(own["cuda_rng"])
        return True

    # ----- divergence: roll back to the last good state and halve the learning rate ---------
    def _snapshot(self) -> None:
        """Keep the state of the last checkpoint in memory, to return to if the loss diverges.

        Called after each regular checkpoint: training got past the last roll-back's trouble,
        so the count of roll-backs starts again (the lowered learning rate stays).
        """
        if self.good is not None and self.progress.step > self.good["progress"].step:
            self.progress.rollbacks = 0
        state = (
            self.state
            if isinstance(self.state, tuple)
            else (self.state,)
            if self.state is not None
            else ()
        )
        self.good = {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "progress": replace(self.progress),
            "state": tuple(s.clone() for s in state),
            "rng": torch.get_rng_state(),
        }

    def _check_step(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> str | None:
        """ "ok", "skip" (this batch's loss jumped: do not apply it) or why training diverged."""
        p = self.progress
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

    def _roll_back(self, problem: str) -> None:
        p, good = self.progress, self.good
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
        self.state = None if not state else state if len(state) == 2 else state[0]
        old = good["progress"]
        p.step, p.epoch, p.batch, p.tokens = old.step, old.epoch, old.batch, old.tokens
        p.lr_scale, p.rollbacks = p.lr_scale / 2, p.rollbacks + 1
        p.loss_ema, p.jumps = old.loss_ema, 0
        message = (
            f"{problem} at step {at:,}: rolled back to step {p.step:,} "
            f"and halved the learning rate (now {p.lr_scale:g} × the schedule)"
        )
        if self.next_curve_point != math.inf:  # the undone steps' curve points come again
            self.next_curve_point = self._next_curve_point()
        on_rollback = getattr(self.hooks, "on_rollback", None)
        if on_rollback is not None:
            on_rollback(self, message)

    # ----- the loop --------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> StreamBatches:
        return StreamBatches(
            self.train_tokens,
            self.config.batch_size,
            self.config.seq_len,
            seed=self.config.seed,
            epoch=epoch,
            rank=self.peers.rank,
            ranks=self.peers.size,
        )

    def fraction_done(self) -> float:
        p = self.progress
        done = [p.step / self.total_steps] if self.total_steps else []
        if self.max_time_s:
            done.append(p.elapsed_s / self.max_time_s)
        return max(done) if done else 0.0

    def finished(self) -> str | None:
        p, c = self.progress, self.config
        if self.stop_reason:
            return self.stop_reason
        if c.max_steps and p.step >= c.max_steps:
            return "max steps"
        if c.effective_epochs and p.epoch >= c.effective_epochs:
            return "epochs"
        if self.max_time_s and p.elapsed_s >= self.max_time_s:
            return "max time"
        if c.patience and p.evals_since_best >= c.patience:
            return "early stop"
        return None

    def curve_tokens(self) -> int:
        """Held-out tokens a curve point evaluates: all of them where that fits the point's
        share of the run's time, else a sample sized from the training speed so far (fixed at
        the first point, so every point of a run measures the same text)."""
        p, whole = self.progress, len(self.val_tokens)
        if self.config.curve_tokens:
            return min(self.config.curve_tokens, whole)
        if p.curve_tokens is None:
            done = self.fraction_done()
            total_s = self.max_time_s or (p.elapsed_s / done if done > 0 else p.elapsed_s)
            rate = EVAL_SPEED_UP * p.tokens / max(p.elapsed_s, 1e-9)
            affordable = int(rate * CURVE_SHARE * total_s / CURVE_POINTS)
            p.curve_tokens = min(whole, max(MIN_CURVE_TOKENS, affordable))
        return min(p.curve_tokens, whole)

    def evaluate(self, *, curve_point: bool = False) -> float:
        """Held-out loss in nats per token. A whole evaluation is recorded as the last one and
        may be the best; a curve point on a sample of the held-out text is only reported."""
        self.last_eval_at = self.fraction_done()
        limit = self.curve_tokens() if curve_point else None
        nats, count = evaluate_tokens(
            self.model,
            self.val_tokens,
            limit=limit,
            shard=(self.peers.rank, self.peers.size),
            unscored=self.unscored,
        )
        nats, count = self.peers.total(nats, count)  # each process scored its share
        count = int(count)
        loss = nats / max(count, 1)
        p = self.progress
        if limit is not None and limit < len(self.val_tokens) - 1:  # a sample, not the whole
            self.hooks.on_eval(self, loss, False, sample_tokens=count)
            return loss
        self.last_whole_eval_step = p.step
        p.last_val_nats = loss
        improved = p.best_val_nats is None or loss < p.best_val_nats
        if improved:
            p.best_val_nats, p.best_step, p.evals_since_best = loss, p.step, 0
        elif not curve_point:  # --patience counts epoch ends and --eval-every, on any corpus
            p.evals_since_best += 1
        self.hooks.on_eval(self, loss, improved)
        if improved:
            self.save(self, best=True)
        return loss

    def _curve_point_due(self) -> bool:
        """A curve point is due, and no other evaluation was made in the last half interval
        (an epoch's end just before it already drew that point); the end is evaluated whole."""
        done = self.fraction_done()
        recent = done - self.last_eval_at < 0.5 / CURVE_POINTS
        return done >= self.next_curve_point and not recent and not self.finished()

    def _next_curve_point(self) -> float:
        """The fraction of the run at which the next curve point falls."""
        return (math.floor(self.fraction_done() * CURVE_POINTS + 1e-9) + 1) / CURVE_POINTS

    def fit(self) -> str:
        """Train until epochs / max_steps / max_time / patience / a signal says stop; return why."""
        p = self.progress
        self.model.train()
        clock = time.perf_counter() - p.elapsed_s
        last_save = p.elapsed_s
        interval = self.eval_every_s
        # on a fixed grid: of time with --eval-every, else of the run's fraction done
        next_eval = (math.floor(p.elapsed_s / interval) + 1) * interval if interval else math.inf
        self.next_curve_point = math.inf if interval else self._next_curve_point()
        reason = self.finished()
        self.reason = reason or "finished"
        self.hooks.on_start(self)
        try:
            self._loop(
                stop_reason=reason,
                clock=clock,
                next_eval=next_eval,
                last_save=last_save,
                interval=interval,
            )
        except RuntimeError as e:
            self.peers.failing(e)
            raise
        finally:
            self.hooks.on_end(self, self.reason)
        return self.reason

    def _now(self, clock: float) -> float:
        """The run's elapsed time as rank 0 sees it, on every process (so that all take the
        same decisions at the same step: evaluate, checkpoint, stop at a time limit)."""
        return self.peers.clock(time.perf_counter() - clock)

    def _loop(self, *, stop_reason, clock, next_eval, last_save, interval) -> None:
        p, c, model = self.progress, self.config, self.step_model
        reason, first_step = stop_reason, p.step
        self.last_whole_eval_step = None
        autocast = autocast_for(self.device)
        pin = self.device.type == "cuda"  # page-locked batches copy to the GPU asynchronously
        self._snapshot()
        with StopFlag() as stop:
            while reason is None:
                batches = self._epoch_batches(p.epoch)
                if p.batch == 0:
                    self.state = None  # a new epoch starts at a new offset: no carried context
                while reason is None:
                    self.threads.step_starts(p.elapsed_s)
                    x, y = batches.get(p.batch)
                    if pin:
                        x, y = x.pin_memory(), y.pin_memory()
                    x, y = (
                        x.to(self.device, non_blocking=True),
                        y.to(self.device, non_blocking=True),
                    )
                    lr = lr_at(c, p.step, self.fraction_done(), self.total_steps) * p.lr_scale
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    with autocast:
                        _, loss, state = model(x, self.state, y)
                    self.state = detach_state(state)
                    self.model.objective(loss).backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
                    verdict = self._check_step(loss, grad_norm)
                    if verdict not in ("ok", "skip"):
                        self._roll_back(verdict)
                        break  # go on from the restored position (its epoch's batches)
                    if verdict == "ok":
                        self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    p.step += 1
                    p.batch += 1
                    p.tokens += x.numel() * self.peers.size
                    p.elapsed_s = self._now(clock)
                    self.threads.step_ends(p.elapsed_s)
                    self.hooks.on_step(self, loss.detach(), lr)
                    if p.batch == len(batches):
                        p.epoch, p.batch = p.epoch + 1, 0
                        self.evaluate()
                        self.hooks.on_epoch_end(self)
                        # saved as it is checked below
                        last_save = p.elapsed_s = self._now(clock)
                        self.save(self)
                        self._snapshot()
                    elif p.elapsed_s >= next_eval:
                        self.evaluate()
                        p.elapsed_s = self._now(clock)
                    elif self._curve_point_due():
                        self.evaluate(curve_point=True)  # the end is evaluated whole below
                        p.elapsed_s = self._now(clock)
                    if p.elapsed_s >= next_eval:
                        next_eval = (math.floor(p.elapsed_s / interval) + 1) * interval
                    if self.fraction_done() >= self.next_curve_point:
                        self.next_curve_point = self._next_curve_point()
                    # a signal, or a hook's request to stop (rank 0's), here or on another process
                    signalled, asked = self.peers.any(
                        stop.signal_name is not None, self.stop_reason is not None
                    )
                    if asked and self.stop_reason is None:
                        self.stop_reason = "stopped by training process 0"
                    if signalled:
                        reason = f"interrupted ({stop.signal_name or 'another process'})"
                    elif self.save_every_s and p.elapsed_s - last_save >= self.save_every_s:
                        self.save(self)
                        self._snapshot()
                        last_save = p.elapsed_s
                    reason = reason or self.finished()
                    if p.batch == 0:  # the epoch ended: the next reads its own batches (offset)
                        break
            moved = p.step > first_step
            if (
                moved
                and p.batch != 0
                and self.last_whole_eval_step != p.step
                and not self.stop_reason  # a hook stopped it (a pruned trial): no use for it
                and not reason.startswith("interrupted")
            ):
                self.evaluate()  # the run ends mid-epoch: measure where it ended
            if moved and (p.batch != 0 or reason.startswith("interrupted")):
                self.save(self)
        self.reason = reason
