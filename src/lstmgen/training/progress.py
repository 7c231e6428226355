"""Where a run stands between steps: its Progress (saved with every checkpoint) and the
StopFlag a Ctrl-C or SIGTERM raises, which the loop reads after each step."""

from __future__ import annotations

import signal
from dataclasses import dataclass


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
