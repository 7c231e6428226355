"""The training loop (Trainer), its TrainConfig, and evaluation in bits per character."""

from __future__ import annotations

import copy
import math
import signal
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from .batches import StreamBatches
from .errors import LstmgenError, parse_duration
from .model import LSTMLanguageModel, detach_state

LN2 = math.log(2)


def bits_per_char(nats_per_token: float, tokens_per_char: float = 1.0) -> float:
    """Per-token loss in nats → bits per character of the text (tokens_per_char = tokens ÷ characters)."""
    return nats_per_token * tokens_per_char / LN2


@dataclass
class TrainConfig:
    batch_size: int = 16  # parallel streams; small batches = more updates per second on a CPU (BENCHMARKS.md)
    seq_len: int = 32  # steps of back-propagation through time per batch (state carries longer context)
    lr: float = 1e-2  # peak learning rate of AdamW; with seq_len 32 it beat 3e-3/64 at 60 s and 600 s (BENCHMARKS.md)
    weight_decay: float = 0.01
    warmup_steps: int = 100  # linear warm-up, then cosine decay to min_lr_fraction * lr
    min_lr_fraction: float = 0.1
    grad_clip: float = 1.0  # clip the gradient's global norm to this
    epochs: int | None = None  # total epochs of the run (10 when neither this nor max_time is set)
    max_time: str | None = None  # total training wall-clock of the run, e.g. 90s, 10m, 2h
    max_steps: int | None = None  # total optimizer steps of the run
    patience: int | None = None  # stop after this many evaluations without a better held-out loss
    eval_every: str | None = None  # also evaluate every so often (e.g. 2m); always at each epoch's end
    save_every: str | None = "15m"  # also checkpoint this often within long epochs
    sample_length: int = 200  # tokens (characters at the char level) per sample printed after each epoch
    embeddings: str | None = None  # word vectors (GloVe / word2vec) the word level starts from
    lr_finder: bool = False  # before training, a short range test picks the peak lr (replaces --lr)
    seed: int = 1337
    device: str = "auto"  # auto = cuda if present, else mps, else cpu

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "sample_length"):
            if getattr(self, name) < 1:
                raise LstmgenError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise LstmgenError(f"--lr {self.lr} must be a number more than 0")
        if not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise LstmgenError(f"--grad-clip {self.grad_clip} must be more than 0")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise LstmgenError(f"--weight-decay {self.weight_decay} must be 0 or more")
        if not 0 <= self.min_lr_fraction <= 1:
            raise LstmgenError(f"--min-lr-fraction {self.min_lr_fraction} must be between 0 and 1")
        if self.warmup_steps < 0:
            raise LstmgenError(f"--warmup-steps {self.warmup_steps} must be 0 or more")
        if not 0 <= self.seed < 2**63:
            raise LstmgenError(f"--seed {self.seed} must be between 0 and 2**63 - 1")
        for name in ("epochs", "max_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise LstmgenError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
        if self.patience is not None and self.patience < 1:
            raise LstmgenError(f"--patience must be at least 1 (got {self.patience})")
        for name in ("max_time", "eval_every", "save_every"):
            parse_duration(getattr(self, name))  # fail early on a bad duration
        resolve_device(self.device)

    @property
    def effective_epochs(self) -> int | None:
        if self.epochs is None and self.max_time is None and self.max_steps is None:
            return 10
        return self.epochs

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


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
        raise LstmgenError(f"--device {name!r} is not a device; use auto, cpu, cuda, cuda:1 or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LstmgenError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LstmgenError("--device mps was asked for but MPS is not available; use --device cpu")
    return device


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only (not embeddings, biases); the trainer's optimizer."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.99),
    )


def mixed_precision(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA GPUs that have it (cuDNN LSTM in bf16); none elsewhere: oneDNN's CPU LSTM
    has no bf16 kernel on CPUs without AVX-512 bf16 ("could not create a primitive descriptor")."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast_for(device: torch.device) -> torch.autocast:
    """The autocast context training steps run in: enabled only where mixed_precision says so."""
    dtype = mixed_precision(device)
    return torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


@torch.no_grad()
def evaluate_tokens(
    model: LSTMLanguageModel, tokens: np.ndarray, *, streams: int = 16, warmup: int = 256, chunk: int = 256
) -> tuple[float, int]:
    """Total nats and count of predicted tokens over `tokens`, every position after the first scored once.

    The sequence is cut into `streams` ranges evaluated side by side; each range is
    preceded by up to `warmup` unscored tokens before it, so no prediction starts
    from a cold state except the very first ones of the text.
    """
    n_pred = len(tokens) - 1
    if n_pred < 1:
        return 0.0, 0
    device = next(model.parameters()).device
    streams = max(1, min(streams, n_pred // max(warmup, 1)))
    span = math.ceil(n_pred / streams)
    width = warmup + span
    inputs = np.zeros((streams, width), dtype=np.int64)
    targets = np.zeros((streams, width), dtype=np.int64)
    scored = np.zeros((streams, width), dtype=bool)
    for i in range(streams):
        start, stop = i * span, min((i + 1) * span, n_pred)  # predictions of tokens[start+1 .. stop]
        begin = max(0, start - warmup)  # unscored context before the range
        length = stop - begin  # padding, if any, comes after the scored range: it cannot affect it
        inputs[i, :length] = tokens[begin:stop]
        targets[i, :length] = tokens[begin + 1 : stop + 1]
        scored[i, start - begin : length] = True
    was_training = model.training
    model.eval()
    x, y, mask = (torch.from_numpy(a).to(device) for a in (inputs, targets, scored))
    total, state = 0.0, None
    for t in range(0, width, chunk):
        logits, _, state = model(x[:, t : t + chunk], state)  # (S, c, V)
        nll = torch.nn.functional.cross_entropy(
            logits.float().transpose(1, 2), y[:, t : t + chunk], reduction="none"
        )  # (S, c)
        total += float((nll * mask[:, t : t + chunk]).sum())
    model.train(was_training)
    return total, int(scored.sum())


def lr_at(config: TrainConfig, step: int, progress: float, total_steps: int | None = None) -> float:
    """Linear warm-up, then cosine decay to min_lr_fraction by progress = 1.

    Warm-up lasts warmup_steps, or a tenth of the run when the run is shorter than that.
    """
    warmup = min(config.warmup_steps, max(1, total_steps // 10)) if total_steps else config.warmup_steps
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


JUMPS_BEFORE_ROLLBACK = 3  # a single high-loss batch is skipped; three in a row mean divergence


MAX_ROLLBACKS = 8  # after this many, the run stops and asks for a lower --lr


class Trainer:
    """Trains a model on a token store, checkpointing into run_dir.

    The loop reads top to bottom; the `hooks` object gets told about steps,
    evaluations, epochs and checkpoints (printing, progress bar, samples).
    """

    def __init__(self, model, train_tokens, val_tokens, config: TrainConfig, *, hooks, save, device):
        self.model, self.config, self.hooks, self.save, self.device = model, config, hooks, save, device
        self.train_tokens, self.val_tokens = train_tokens, val_tokens
        self.optimizer = make_optimizer(model, config.lr, config.weight_decay)
        self.progress = Progress()
        self.good: dict | None = None  # the last checkpoint's state, kept in memory (see _snapshot)
        self.state = None  # the recurrent state carried between batches
        self.max_time_s = parse_duration(config.max_time)
        self.eval_every_s = parse_duration(config.eval_every)
        self.save_every_s = parse_duration(config.save_every)
        self.steps_per_epoch = len(self._epoch_batches(0))
        # The schedule's horizon: the epochs if given (max_steps then only stops early, as a
        # signal would), else max_steps; with neither, max_time alone paces the schedule.
        epochs = config.effective_epochs
        self.total_steps = epochs * self.steps_per_epoch if epochs else config.max_steps

    # ----- state for checkpoints -------------------------------------------------------------
    def trainer_state(self) -> dict:
        state = self.state if self.state is not None else ()
        return {
            "format": torch.tensor(1),
            "step": torch.tensor(self.progress.step),
            "optimizer": self.optimizer.state_dict(),
            "rnn_state": list(state) if isinstance(state, tuple) else [state],
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if self.device.type == "cuda" else torch.empty(0),
        }

    def load_trainer_state(self, state: dict, progress: Progress) -> None:
        if int(state["step"]) != progress.step:
            raise LstmgenError("the run's weights and trainer_state.pt are from different steps; resume is unsafe")
        self.optimizer.load_state_dict(state["optimizer"])
        rnn_state = [s.to(self.device) for s in state["rnn_state"]]
        self.state = None if not rnn_state else (tuple(rnn_state) if len(rnn_state) == 2 else rnn_state[0])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state["cuda_rng"].numel():
            torch.cuda.set_rng_state(state["cuda_rng"])
        self.progress = progress

    # ----- divergence: roll back to the last good state and halve the learning rate ---------
    def _snapshot(self) -> None:
        """Keep the state of the last checkpoint in memory, to return to if the loss diverges.

        Called after each regular checkpoint: training got past the last roll-back's trouble,
        so the count of roll-backs starts again (the lowered learning rate stays).
        """
        if self.good is not None and self.progress.step > self.good["progress"].step:
            self.progress.rollbacks = 0
        state = self.state if isinstance(self.state, tuple) else (self.state,) if self.state is not None else ()
        self.good = {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "progress": replace(self.progress),
            "state": tuple(s.clone() for s in state),
            "rng": torch.get_rng_state(),
        }

    def _check_step(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> str | None:
        """"ok", "skip" (this batch's loss jumped: do not apply it) or why training diverged."""
        p = self.progress
        value, norm = float(loss.detach()), float(grad_norm)  # one device sync per step
        if not math.isfinite(value) or not math.isfinite(norm):
            return f"the loss became {value:.4g} (gradient norm {norm:.4g})"
        if p.loss_ema is not None and p.step > self.config.warmup_steps and value > 2 * p.loss_ema + 1:
            p.jumps += 1
            if p.jumps >= JUMPS_BEFORE_ROLLBACK:
                return f"the loss jumped to {value:.3f} nats from about {p.loss_ema:.3f} for {p.jumps} steps in a row"
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
                f"the last checkpoint is intact: continue it with a lower peak rate, e.g. lstmgen train --resume RUN --lr {self.config.lr / 4:g}"
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
        message = (f"{problem} at step {at:,}: rolled back to step {p.step:,} and halved the learning rate "
                   f"(now {p.lr_scale:g} × the schedule)")
        on_rollback = getattr(self.hooks, "on_rollback", None)
        if on_rollback is not None:
            on_rollback(self, message)

    # ----- the loop --------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> StreamBatches:
        return StreamBatches(self.train_tokens, self.config.batch_size, self.config.seq_len, seed=self.config.seed, epoch=epoch)

    def _fraction_done(self) -> float:
        p = self.progress
        done = [p.step / self.total_steps] if self.total_steps else []
        if self.max_time_s:
            done.append(p.elapsed_s / self.max_time_s)
        return max(done) if done else 0.0

    def _finished(self) -> str | None:
        p, c = self.progress, self.config
        if c.max_steps and p.step >= c.max_steps:
            return "max steps"
        if c.effective_epochs and p.epoch >= c.effective_epochs:
            return "epochs"
        if self.max_time_s and p.elapsed_s >= self.max_time_s:
            return "max time"
        if c.patience and p.evals_since_best >= c.patience:
            return "early stop"
        return None

    def evaluate(self) -> float:
        """Held-out loss in nats per token; records it and tracks the best."""
        nats, count = evaluate_tokens(self.model, self.val_tokens)
        loss = nats / max(count, 1)
        p = self.progress
        p.last_val_nats = loss
        improved = p.best_val_nats is None or loss < p.best_val_nats
        if improved:
            p.best_val_nats, p.best_step, p.evals_since_best = loss, p.step, 0
        else:
            p.evals_since_best += 1
        self.hooks.on_eval(self, loss, improved)
        if improved:
            self.save(self, best=True)
        return loss

    def fit(self) -> str:
        """Train until epochs / max_steps / max_time / patience / a signal says stop; returns why."""
        p = self.progress
        self.model.train()
        clock = time.perf_counter() - p.elapsed_s
        last_save = p.elapsed_s
        interval = self.eval_every_s
        next_eval = (math.floor(p.elapsed_s / interval) + 1) * interval if interval else math.inf  # on a fixed grid
        reason = self._finished()
        self.reason = reason or "finished"
        self.hooks.on_start(self)
        try:
            self._loop(stop_reason=reason, clock=clock, next_eval=next_eval, last_save=last_save, interval=interval)
        finally:
            self.hooks.on_end(self, self.reason)
        return self.reason

    def _loop(self, *, stop_reason, clock, next_eval, last_save, interval) -> None:
        p, c, model = self.progress, self.config, self.model
        reason, first_step, last_eval_step = stop_reason, p.step, None
        autocast = autocast_for(self.device)
        self._snapshot()
        with StopFlag() as stop:
            while reason is None:
                batches = self._epoch_batches(p.epoch)
                if p.batch == 0:
                    self.state = None  # a new epoch starts at a new offset: no carried context
                while p.batch < len(batches) and reason is None:
                    x, y = batches.get(p.batch)
                    x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                    lr = lr_at(c, p.step, self._fraction_done(), self.total_steps) * p.lr_scale
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    with autocast:
                        _, loss, state = model(x, self.state, y)
                    self.state = detach_state(state)
                    model.objective(loss).backward()
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
                    p.tokens += x.numel()
                    p.elapsed_s = time.perf_counter() - clock
                    self.hooks.on_step(self, loss.detach(), lr)
                    if p.batch == len(batches):
                        p.epoch, p.batch = p.epoch + 1, 0
                        self.evaluate()
                        last_eval_step = p.step
                        self.hooks.on_epoch_end(self)
                        last_save = p.elapsed_s = time.perf_counter() - clock  # saved as it is checked below
                        self.save(self)
                        self._snapshot()
                    elif p.elapsed_s >= next_eval:
                        self.evaluate()
                        last_eval_step = p.step
                        p.elapsed_s = time.perf_counter() - clock
                    if p.elapsed_s >= next_eval:
                        next_eval = (math.floor(p.elapsed_s / interval) + 1) * interval
                    if stop.signal_name:
                        reason = f"interrupted ({stop.signal_name})"
                    elif self.save_every_s and p.elapsed_s - last_save >= self.save_every_s:
                        self.save(self)
                        self._snapshot()
                        last_save = p.elapsed_s
                    reason = reason or self._finished()
            moved = p.step > first_step
            if moved and p.batch != 0 and last_eval_step != p.step and not reason.startswith("interrupted"):
                self.evaluate()  # the run ends mid-epoch: measure where it ended
            if moved and (p.batch != 0 or reason.startswith("interrupted")):
                self.save(self)
        self.reason = reason
