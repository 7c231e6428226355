"""One model's running batch, stepped in a thread off the event loop.

Requests (`Job`s) wait in a queue and join the batch between steps while it has room
(`max_batch` samples); each step's pieces of text go back to the event loop in one call, where
every job's asyncio queue receives its own. A job whose client went away is cancelled and its
samples leave at the next step. The thread computes with the threads `generate` would use
(threads.py: --threads / LSTMGEN_THREADS, or one against all cores but one, timed on its own steps).
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections import deque

import numpy as np
import torch

from lstmgen.config import SampleConfig
from lstmgen.errors import say
from lstmgen.inference import Model
from lstmgen.sampling.batch import Piece, RunningBatch
from lstmgen.serve.metrics import ServeMetrics
from lstmgen.threads import ThreadChooser, cores


class Overloaded(Exception):
    """Too many samples are waiting already (or the server is stopping): try again later."""


class Job:
    """One request: its prompts' samples, and the queue their pieces arrive in.

    Each item of `queue` is a list of Pieces (one step's worth), or an Exception.
    """

    def __init__(self, parts: list[tuple[torch.Tensor, SampleConfig, list, np.ndarray | None]]):
        # per prompt: prime ids, settings, one decoder per sample, the samples' conditions
        self.parts = parts
        self.samples = sum(part[1].num_samples for part in parts)
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = False


class BatchWorker:
    """Steps one model's running batch in a thread while there are samples to make."""

    def __init__(
        self,
        model: Model,
        *,
        max_batch: int,
        max_waiting: int,
        name: str = "model",
        metrics: ServeMetrics | None = None,
    ):
        rules = getattr(model.tokenizer, "rules", None)
        self.batch = RunningBatch(model.module, banned=model.banned, rules=rules)
        self.copy_guard = model.copy_guard  # by max_copy; built before a request is queued
        self.metrics = metrics or ServeMetrics()
        self.name = name
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.waiting: deque[Job] = deque()
        self.wake = threading.Condition()
        self.stopping = False
        self.most = 0  # the largest batch stepped so far
        self.thread = threading.Thread(target=self._run, name="lstmgen-batch", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        """Queue a job; Overloaded when too many samples wait already or the server stops."""
        with self.wake:
            if self.stopping:
                raise Overloaded("the server is shutting down")
            waiting = sum(j.samples for j in self.waiting)
            if waiting + job.samples > self.max_waiting:
                raise Overloaded(
                    f"the server is busy ({waiting} samples are waiting for a place in the "
                    "batch); try again shortly"
                )
            self.waiting.append(job)
            self.wake.notify()

    def stop(self) -> None:
        """Finish the jobs in hand, then end the thread."""
        with self.wake:
            self.stopping = True
            self.wake.notify()
        self.thread.join()

    def _run(self) -> None:
        # One thread against all cores but one, timed on its own steps: the event loop and the
        # clients keep a core. On 2 cores, computing with both made 16 clients' p99 first token
        # 131 ms against 36 ms with one, and 64 clients' chars/s 14,445 against 17,126
        # (benchmarks/results/issue23/threads2 and threads1, BENCHMARKS.md).
        threads = ThreadChooser(recheck_s=5.0, trial_steps=8, most=cores() - 1)
        metrics, name = self.metrics, self.name
        batch_gauge = metrics.batch.labels(model=name)
        queue_gauge = metrics.queue.labels(model=name)
        tokens, steps = metrics.tokens.labels(model=name), metrics.steps.labels(model=name)
        sizes = metrics.batch_size.labels(model=name)
        held: list[Piece] = []  # pieces not yet handed over
        sent = time.perf_counter()
        drawn = stepped = 0  # tokens and steps not yet counted in the metrics
        while True:
            with self.wake:
                while not (self.waiting or len(self.batch) or self.stopping):
                    self.wake.wait()
                if self.stopping and not (self.waiting or len(self.batch)):
                    return
                joining: list[Job] = []
                room = self.max_batch - len(self.batch)
                while self.waiting and self.waiting[0].samples <= room:
                    joining.append(self.waiting.popleft())
                    room -= joining[-1].samples
                queued = sum(j.samples for j in self.waiting)
            for job in joining:  # primed here, outside the lock: submit() need not wait
                first = 0
                for prime_ids, config, decoders, rows in job.parts if not job.cancelled else []:
                    guard = self.copy_guard(config.max_copy)
                    self.batch.add(job, prime_ids, config, decoders, first, rows, guard)
                    first += len(decoders)
            try:
                gone = {job for job in self.batch.owners() if job.cancelled}
                if gone:
                    self.batch.drop(gone)
                self.most = max(self.most, len(self.batch))
                threads.step_starts(time.perf_counter())
                made = self.batch.step()
                threads.step_ends(time.perf_counter())
                held += made
                drawn += self.batch.drawn
                stepped += 1
                # Wake the event loop every 10 ms, not every step (~0.1 ms): an SSE event per
                # token per client cost more than the token (BENCHMARKS.md, serve).
                if (
                    time.perf_counter() - sent >= 0.01
                    or not len(self.batch)
                    or any(p.end for p in made)
                ):
                    self._deliver(held)
                    held, sent = [], time.perf_counter()
                    tokens.inc(drawn)
                    steps.inc(stepped)
                    sizes.observe(self.batch.drawn)
                    batch_gauge.set(len(self.batch))
                    queue_gauge.set(queued)
                    drawn = stepped = 0
            except Exception as error:  # a bug: tell the waiting clients, keep serving others
                say(traceback.format_exc())
                owners = self.batch.owners()
                self.batch.drop(owners)
                held = []
                for job in owners:
                    job.loop.call_soon_threadsafe(job.queue.put_nowait, error)

    def _deliver(self, pieces: list[Piece]) -> None:
        """Hand the pieces made since the last call to their jobs: one call into the event
        loop for all of them."""
        if not pieces:
            return
        by_job: dict[Job, list[Piece]] = {}
        for piece in pieces:
            by_job.setdefault(piece.sample.owner, []).append(piece)  # type: ignore[arg-type]
        event_loop = self.metrics.event_loop

        def put() -> None:
            started = time.perf_counter()
            for job, mine in by_job.items():
                job.queue.put_nowait(mine)
            event_loop.inc(time.perf_counter() - started)

        next(iter(by_job)).loop.call_soon_threadsafe(put)
