"""The exceptions users meet, and the one way lstmgen talks to them (stderr: stdout is text)."""

from __future__ import annotations

import sys


class LstmgenError(Exception):
    """A problem with the user's input: the message names it and says what to do.

    The command line prints it as one line on stderr and exits with code 2.
    """


class PeerStopped(LstmgenError):
    """Another training process (under torchrun) died or stopped answering; the last
    checkpoint is whole."""


class SaidByRankZero(LstmgenError):
    """The error that training process 0 met and printed; the other processes stop with it
    and print nothing."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped the work after its state was saved; the message says how to
    go on (exit code 130)."""


class TrainingInterrupted(Interrupted):
    """Training stopped on Ctrl-C or SIGTERM after saving a checkpoint; `result` says where."""

    def __init__(self, result, *, processes: int = 1):
        nproc = f" --nproc {processes}" if processes > 1 else ""
        super().__init__(
            f"training interrupted; saved at step {result.steps:,}. "
            f"Resume with: lstmgen train --resume {result.run_dir}{nproc}"
        )
        self.result = result


def say(message: str) -> None:
    """Print a line for the user on stderr (never stdout, which may carry generated text)."""
    print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    say(f"lstmgen: warning: {message}")
