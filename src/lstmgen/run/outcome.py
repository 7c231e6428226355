"""How a training session ended: TrainResult, and its closing line (the figures, or which
limit a resumed run had already reached and what to raise)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from lstmgen.config import bits_per_char
from lstmgen.describe import last_evaluation
from lstmgen.training.trainer import Trainer


@dataclass
class TrainResult:
    """What lstmgen.train returns.

    best_val_bits_per_char is the lowest held-out figure of all evaluations (the weights in
    best/); last_val_bits_per_char is the final model's, measured at its last step (None if
    that step was not evaluated, e.g. after Ctrl-C).
    """

    run_dir: Path
    stopped_because: str
    steps: int
    epochs: float
    tokens: int
    elapsed_s: float
    best_val_bits_per_char: float | None
    last_val_bits_per_char: float | None
    # The closing line: where the run is, how it did, how to use it (empty under torchrun but
    # in process 0). The command prints it on stdout; the API leaves it to the caller.
    summary: str = ""

    def to_json(self) -> dict:
        """What `train --json` prints: the figures, the run directory as text."""
        data = {k: v for k, v in vars(self).items() if k != "summary"}
        return {**data, "run_dir": str(self.run_dir)}


def held_out(result: TrainResult, trainer: Trainer) -> str:
    """The closing line's figures: the final model's held-out bits/char and the best one."""
    best, last = result.best_val_bits_per_char, result.last_val_bits_per_char
    if best is None:
        return "not evaluated"
    best_text = f"best {best:.4f} (step {trainer.progress.best_step:,})"
    if last is None:
        return f"held-out: the end was not evaluated, {best_text}"
    return f"held-out {last:.4f} bits/char at the end, {best_text}"


LIMIT_FLAGS = {
    "max steps": "--max-steps",
    "epochs": "--epochs",
    "max time": "--max-time",
    "early stop": "--patience",
}


def already_reached(out: Path, trainer: Trainer, reached: str) -> str:
    """The line for a resumed run that has nothing left to do: which limit, what to raise."""
    t, p = trainer.config, trainer.progress

    def raised(limit: float, now: float) -> float:  # twice the limit, or twice where it is
        return 2 * limit if 2 * limit > now else 2 * now

    if reached == "max steps":
        limit, more = f"--max-steps {t.max_steps}", f"--max-steps {raised(t.max_steps, p.step):.0f}"
    elif reached == "epochs":
        epochs = t.effective_epochs
        limit, more = f"--epochs {epochs}", f"--epochs {raised(epochs, p.epoch):.0f}"
    elif reached == "max time":
        limit = f"--max-time {t.max_time}"
        more = f"--max-time {_duration(raised(t.max_time_s or 0, p.elapsed_s))}"
    else:
        limit, more = f"--patience {t.patience}", f"--patience {2 * t.patience}"
    return (
        f"{out} already reached its limit ({limit}) at step {p.step:,}; nothing was trained. "
        f"To train on, raise it, e.g. lstmgen train --resume {out} {more} "
        "(--epochs, --max-time and --max-steps are the run's totals)"
    )


def _duration(seconds: float) -> str:
    """Seconds as a --max-time value, rounded up to whole minutes (or hours)."""
    if seconds < 60:
        return f"{math.ceil(seconds)}s"
    minutes = math.ceil(seconds / 60)
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def result_of(out: Path, trainer: Trainer, reason: str, tokens_per_char: float) -> TrainResult:
    p = trainer.progress

    def bits(nats: float | None) -> float | None:
        return None if nats is None else float(bits_per_char(nats, tokens_per_char))

    evaluated = last_evaluation(out / "metrics.jsonl", up_to=p.step)
    at_end = evaluated is not None and evaluated["step"] == p.step
    return TrainResult(
        run_dir=out,
        stopped_because=reason,
        steps=p.step,
        epochs=p.epoch + p.batch / max(trainer.steps_per_epoch, 1),
        tokens=p.tokens,
        elapsed_s=p.elapsed_s,
        best_val_bits_per_char=bits(p.best_val_nats),
        last_val_bits_per_char=bits(p.last_val_nats) if at_end else None,
    )
