"""The training loop: Trainer reads batches, steps, evaluates and checkpoints, top to bottom.

The schedule and optimizer are in schedule.py, the progress record and stop flag in
progress.py, and the roll-back after a diverged loss in divergence.py."""

from __future__ import annotations

import math
import time

import torch

from lstmgen.config import TrainConfig
from lstmgen.data.store import Documents
from lstmgen.device import autocast_for
from lstmgen.errors import LstmgenError
from lstmgen.metrics import evaluate_tokens
from lstmgen.model import detach_state
from lstmgen.threads import ThreadChooser
from lstmgen.training.averaging import WeightAverage
from lstmgen.training.batches import StreamBatches
from lstmgen.training.distributed import Peers
from lstmgen.training.divergence import Divergence
from lstmgen.training.progress import Progress, StopFlag
from lstmgen.training.schedule import lr_at, make_optimizer

# Without --eval-every, a run is evaluated at CURVE_POINTS evenly spaced points of its length
# (time or steps, whichever ends it), so every run draws a curve. Each point may cost at most
# CURVE_SHARE / CURVE_POINTS of the run's time: where the whole held-out split is dearer, a
# point evaluates curve_tokens spread over it (marked "val_sample" in metrics.jsonl), and only
# whole evaluations (epoch ends, the end, points that afford it) pick the best checkpoint.
CURVE_POINTS = 20
CURVE_SHARE = 0.05
EVAL_SPEED_UP = 2  # evaluating a token costs at most half of training on it (no backward)
MIN_CURVE_TOKENS = 4096


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
        documents: tuple[Documents, Documents] | None = None,
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
        self.unscored = unscored  # document marks: their predictions are not held-out loss
        # a conditioned store's documents (train, val): each token's conditions come from them
        self.train_documents = documents[0] if documents else None
        self.val_documents = documents[1] if documents else None
        self.optimizer = make_optimizer(model, config.lr, config.weight_decay)
        self.divergence = Divergence(model, self.optimizer, config, self.peers)
        # what is evaluated, saved and sampled: the weights averaged over the run's tail
        self.average = WeightAverage(model, start=config.average_start, horizon=config.average)
        self.good_average = None  # the average at the divergence snapshot
        self.threads = threads or ThreadChooser()  # measured, unless --threads says
        self.progress = Progress()
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
            **self.average.state(),
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
        self.average.restore(state)  # the model holds the averaged weights until then
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
    def _roll_back(self, problem: str) -> None:
        """Go back to the last checkpoint's state; its undone steps' curve points come again."""
        self.state, message = self.divergence.roll_back(self.progress, problem)
        self.average.roll_back(self.good_average)
        if self.next_curve_point != math.inf:
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
            documents=self.train_documents,
        )

    def fraction_done(self) -> float:
        """How far the run is (1 = done): by steps or by time, whichever is further along."""
        p = self.progress
        done = [p.step / self.total_steps] if self.total_steps else []
        if self.max_time_s:
            done.append(p.elapsed_s / self.max_time_s)
        return max(done) if done else 0.0

    def finished(self) -> str | None:
        """Why the run should stop now, or None to go on."""
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
        whole = limit is None or limit >= len(self.val_tokens) - 1
        # a whole evaluation scores the weight average and the last step's, and keeps the better
        models = self.average.candidates() if whole else [self.average.weights()]
        losses = []
        for model in models:
            nats, count = evaluate_tokens(
                model,
                self.val_tokens,
                limit=limit,
                shard=(self.peers.rank, self.peers.size),
                unscored=self.unscored,
                documents=self.val_documents,
            )
            nats, count = self.peers.total(nats, count)  # each process scored its share
            count = int(count)
            losses.append(nats / max(count, 1))
        p = self.progress
        if not whole:  # a sample of the held-out text: a curve point only
            self.hooks.on_eval(self, losses[0], False, sample_tokens=count)
            return losses[0]
        loss = self.average.choose(losses)
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

    def _snapshot(self) -> None:
        """Keep the state to roll back to if the loss diverges (at each checkpoint)."""
        self.divergence.snapshot(self.progress, self.state)
        self.good_average = self.average.snapshot()

    def _loop(self, *, stop_reason, clock, next_eval, last_save, interval) -> None:
        p, c, model = self.progress, self.config, self.step_model
        reason, first_step = stop_reason, p.step
        self.last_whole_eval_step = None
        autocast = autocast_for(self.device, c.precision)  # bf16 the device lacks: an error
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
                    conditions = batches.conditions(p.batch)  # (B, T, C) or None
                    if pin:
                        x, y = x.pin_memory(), y.pin_memory()
                    x, y = (
                        x.to(self.device, non_blocking=True),
                        y.to(self.device, non_blocking=True),
                    )
                    if conditions is not None:
                        conditions = conditions.to(self.device, non_blocking=True)
                    lr = lr_at(c, p.step, self.fraction_done(), self.total_steps) * p.lr_scale
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    with autocast:
                        _, loss, state = model(x, self.state, y, conditions=conditions)
                    self.state = detach_state(state)
                    self.model.objective(loss).backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
                    verdict = self.divergence.check(p, loss, grad_norm)
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
                    self.average.update(p.step, self.fraction_done())
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
