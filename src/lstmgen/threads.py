"""How many CPU threads lstmgen computes with: set by --threads / LSTMGEN_THREADS, or measured.

PyTorch takes every core by default. Beside one other busy process on a 2-core machine that
made training about 3x slower, while a second thread gains only ~19 % on an idle machine
(BENCHMARKS.md, contention). So lstmgen chooses: training times its own steps under one
thread and under all cores, in turns, keeps the faster, and looks again every so often (the
machine's load changes); single-stream generation uses one thread. Results do not depend on
the thread count (the kernels reduce in the same order), so a choice never changes a run.
"""

from __future__ import annotations

import os
import statistics
import time

import torch
from threadpoolctl import ThreadpoolController

from lstmgen.errors import LstmgenError

ENV = "LSTMGEN_THREADS"
_BLAS = ThreadpoolController()  # numpy's BLAS: the single-step generation path multiplies there


def ask(threads: int | None) -> None:
    """Use this many threads from now on in this process (None: choose by measuring)."""
    global _asked
    _asked = requested(threads)


def requested(threads: int | None = None) -> int | None:
    """The thread count asked for (this argument, ask(), LSTMGEN_THREADS), or None: choose."""
    threads = _asked if threads is None else threads
    if threads is None:
        text = os.environ.get(ENV, "").strip()
        if not text or text == "auto":
            return None
        try:
            threads = int(text)
        except ValueError:
            raise LstmgenError(f"{ENV}={text!r} must be a number of threads or auto") from None
    if threads < 1:
        raise LstmgenError(f"--threads {threads} must be at least 1")
    return threads


def cores() -> int:
    """CPU cores this process may run on: under torchrun, its share of this machine's."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, available // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def use(threads: int) -> None:
    """Compute with this many threads from now on (PyTorch's and numpy's BLAS)."""
    global _using
    if threads != _using:
        torch.set_num_threads(threads)
        _BLAS.limit(limits=threads, user_api="blas")
        _using = threads


_using: int | None = None
_asked: int | None = None


class ThreadChooser:
    """Chooses training's thread count by timing real steps: one thread against all cores.

    Every `recheck_s` seconds (and at the start) the next 2 x `trial_steps` steps run in turns
    under each count; the one with the lower median step time is kept until the next look.
    """

    def __init__(self, *, recheck_s: float = 60.0, trial_steps: int = 4, most: int | None = None):
        fixed = requested()
        self.candidates = [fixed] if fixed else sorted({1, max(1, most or cores())})
        self.recheck_s, self.trial_steps = recheck_s, trial_steps
        self.chosen = self.candidates[-1]
        self.times: dict[int, list[float]] = {}
        self.next_look = 0.0  # clock time of the next look at the candidates
        self.trying: int | None = None
        self.started = 0.0
        use(self.chosen)

    def step_starts(self, now: float) -> None:
        """Before a step: run it with the chosen count, or with the next one to try."""
        if not self.times and len(self.candidates) > 1 and now >= self.next_look:
            self.times = {n: [] for n in self.candidates}
        if self.times:
            done = sum(len(t) for t in self.times.values())
            self.trying = self.candidates[done % len(self.candidates)]
        use(self.trying or self.chosen)  # also undoes what other work (sampling) set
        self.started = time.perf_counter()

    def step_ends(self, now: float) -> None:
        """After a training step: record its time while trying; decide when the turns are done."""
        if self.trying is None:
            return
        self.times[self.trying].append(time.perf_counter() - self.started)
        self.trying = None
        if all(len(t) >= self.trial_steps for t in self.times.values()):
            medians = {n: statistics.median(t[1:] or t) for n, t in self.times.items()}
            self.chosen = min(medians, key=medians.get)
            self.times, self.next_look = {}, now + self.recheck_s
            use(self.chosen)
