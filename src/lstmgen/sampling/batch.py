"""A running batch whose samples come and go: many requests stepped as one (continuous batching).

A server's requests join between steps (`add`) and leave when they end or their client goes
(`drop`); `step()` makes the next token of every live sample in one model step and returns the
text each made. Each sample keeps what makes its text its own: its random stream (seeded with
(seed, sample index), as in TokenSampler), its settings, stop strings, decoder and penalty
window; samples with equal settings are drawn in one call. The numpy stepper's exact rows
(stepper.py) make a seeded request's text the same alone or batched with any others.

A new request's prompt is run in chunks of at most `prime_chunk` tokens, one chunk before each
step of the streams in flight (llama.cpp's server does the same), so a long prompt costs them
bounded pauses rather than one long one. With no stream in flight it runs at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from lstmgen.config import SampleConfig, random_seed
from lstmgen.model import LSTMLanguageModel
from lstmgen.sampling.guard import copy_banned, guard_end
from lstmgen.sampling.sampler import (
    StopMatcher,
    adjust_logits,
    choose,
    expand_state,
    text_of,
)
from lstmgen.sampling.stepper import make_stepper
from lstmgen.tokens import UNKNOWN_ID


@dataclass(eq=False)
class Sample:
    """One live sample: whose it is (`owner`, `index`) and its own sampling state."""

    owner: object
    index: int
    config: SampleConfig
    generator: np.random.Generator
    decoder: object
    matcher: StopMatcher | None
    history: np.ndarray  # the last repetition_window tokens, prime included (-1: none yet)
    made: int = 0  # tokens taken so far
    position: int = field(default=0)  # where the next token goes in history
    copies: object = None  # guard.CopyState under --max-copy


class Piece(NamedTuple):
    """New text of one sample; `end` is "stop" or "length" on its last piece."""

    sample: Sample
    text: str
    end: str | None


@dataclass(eq=False)
class Priming:
    """A request's samples whose prompt is being run, chunk by chunk."""

    samples: list[Sample]
    prime_ids: torch.Tensor  # (T,)
    conditions: np.ndarray | None  # (n, C) of the samples, or None
    rows: torch.Tensor | None  # the conditions the prompt runs under: one row, or one per sample
    done: int = 0  # tokens of the prompt run so far
    state: tuple | None = None
    logits: torch.Tensor | None = None  # (rows, V) after the last token run


def _settings(config: SampleConfig) -> tuple:
    return (config.temperature, config.top_k, config.top_p, config.repetition_penalty)


class RunningBatch:
    """Live samples of many requests; one `step()` gives each its next token."""

    def __init__(
        self, model: LSTMLanguageModel, *, banned=(UNKNOWN_ID,), rules=None, prime_chunk=256
    ):
        self.model = model.eval()
        # 256 tokens of a 2x256 model's prompt: ~10 ms on one core, the pause a stream in
        # flight sees (benchmarks/serve_load.py --long-prompt)
        self.prime_chunk = prime_chunk
        self.priming: list[Priming] = []  # oldest first
        self.device = next(model.parameters()).device
        self.banned, self.rules = np.asarray(banned, dtype=np.int64), rules
        self.samples: list[Sample] = []
        # (samples, their logits (n, V), their state, their conditions (n, C) or None)
        self.joining: list[tuple[list[Sample], torch.Tensor, tuple, np.ndarray | None]] = []
        self.stepper = None
        self.logits = np.zeros((0, model.config.vocab_size), np.float32)  # (B, V)
        self.pending = np.zeros(0, np.int64)  # tokens drawn, not yet fed to the model
        self.rule_state = np.zeros(0, np.int64)
        self.recent = np.zeros((0, model.config.vocab_size), np.int32)  # counts in the window
        self.groups: list[tuple[SampleConfig, np.ndarray | None]] = []
        self.drawn = 0  # tokens drawn by the last step

    def __len__(self) -> int:
        waiting = sum(len(group) for group, *_ in self.joining)
        return len(self.samples) + waiting + sum(len(p.samples) for p in self.priming)

    def add(
        self,
        owner,
        prime_ids: torch.Tensor,
        config: SampleConfig,
        decoders: list,
        first: int = 0,
        conditions: np.ndarray | None = None,
        guard=None,
    ) -> None:
        """Queue one sample per decoder (`owner`'s indices first, first + 1, ...; seeded with
        (seed, 0), (seed, 1), ...; conditioned by the rows of conditions (n, C) where the model
        is; under the copy guard `guard`, if given); they join the step after their prompt has
        run (chunk by chunk, see above)."""
        rows = None
        if conditions is not None:  # the prompt runs once when the samples share conditions
            distinct = len(np.unique(conditions, axis=0)) > 1
            rows = torch.as_tensor(conditions if distinct else conditions[:1], device=self.device)
        seed = config.seed if config.seed is not None else random_seed()
        tail = prime_ids[-config.repetition_window :].cpu().numpy()
        samples = []
        for i, decoder in enumerate(decoders):
            history = np.full(config.repetition_window, -1, np.int64)
            history[: len(tail)] = tail
            samples.append(
                Sample(
                    owner,
                    first + i,
                    config,
                    np.random.Generator(np.random.PCG64([seed, i])),
                    decoder,
                    StopMatcher(config.stop, config.min_length) if config.stop else None,
                    history,
                    position=len(tail) % config.repetition_window,
                    copies=guard.start() if guard is not None else None,
                )
            )
        self.priming.append(Priming(samples, prime_ids.to(self.device), conditions, rows))

    @torch.no_grad()
    def _prime(self) -> None:
        """Run the waiting prompts: at most prime_chunk tokens in all while streams are in
        flight, every prompt whole while none are. A prompt is cut at the same places either
        way (every prime_chunk tokens), so its numbers do not depend on the load."""
        budget = self.prime_chunk if self.samples else None
        while self.priming:
            job = self.priming[0]
            left = len(job.prime_ids) - job.done
            size = min(left, self.prime_chunk - job.done % self.prime_chunk)
            if budget is not None:
                if size > budget:  # not cut shorter: the places stay those of an idle batch
                    return
                budget -= size
            rows = 1 if job.rows is None else len(job.rows)
            ids = job.prime_ids[job.done : job.done + size][None].expand(rows, -1)
            out, _, job.state = self.model(ids, job.state, conditions=job.rows)
            job.logits, job.done = out[:, -1], job.done + size
            if job.done == len(job.prime_ids):
                self.priming.pop(0)
                n, logits, state = len(job.samples), job.logits, job.state
                if rows == 1 and n > 1:
                    logits, state = logits.expand(n, -1), expand_state(state, n)
                self.joining.append((job.samples, logits.float().cpu(), state, job.conditions))

    def drop(self, owners: set) -> None:
        """Forget these owners' samples (their clients went away)."""
        self.joining = [j for j in self.joining if j[0][0].owner not in owners]
        self.priming = [p for p in self.priming if p.samples[0].owner not in owners]
        self._keep([r for r, s in enumerate(self.samples) if s.owner not in owners])

    def owners(self) -> set:
        joining = {j[0][0].owner for j in self.joining} | {p.samples[0].owner for p in self.priming}
        return {s.owner for s in self.samples} | joining

    def step(self) -> list[Piece]:
        """One token for every live sample; the pieces of text they made (ended samples leave)."""
        if self.priming:
            self._prime()
        if len(self.pending):
            self.logits = self.stepper.step(self.pending)
        if self.joining:
            self._join()
        if not self.samples:
            self.drawn = 0
            return []
        ids = self._draw()
        self.drawn = len(ids)
        self.pending = ids
        pieces, staying = [], []
        for row, (sample, token) in enumerate(zip(self.samples, ids.tolist(), strict=True)):
            sample.made += 1
            if self.exhausted[row]:  # every token would copy more than its --max-copy
                text, end = guard_end(sample.decoder, sample.matcher)
            else:
                text, end = text_of(
                    token, sample.decoder, sample.matcher, sample.made == sample.config.length
                )
            if text or end:
                pieces.append(Piece(sample, text, end))
            if end is None:
                staying.append(row)
        if len(staying) < len(self.samples):
            self._keep(staying)
        return pieces

    def _draw(self) -> np.ndarray:
        row_banned = self.rules.banned[self.rule_state] if self.rules is not None else None
        self.exhausted = np.zeros(len(self.samples), dtype=bool)
        copies = [s.copies for s in self.samples]
        if any(c is not None for c in copies):
            row_banned, self.exhausted = copy_banned(
                copies, row_banned, self.banned, self.logits.shape
            )
        uniforms = np.array([s.generator.random() for s in self.samples])
        ids = np.empty(len(self.samples), np.int64)
        for config, rows in self.groups:
            pick = slice(None) if rows is None else rows
            logits = adjust_logits(
                self.logits[pick],
                config,
                self.recent[pick] if config.repetition_penalty != 1 else None,
                self.banned,
                None if row_banned is None else row_banned[pick],
            )
            ids[pick] = choose(logits, config, uniforms[pick])
        if self.rules is not None:
            self.rule_state = self.rules.next[self.rule_state, ids]
        for row, sample in enumerate(self.samples):
            if sample.copies is not None:
                sample.copies.advance(int(ids[row]))
            if sample.config.repetition_penalty != 1:  # slide its window on by this token
                old = sample.history[sample.position]
                if old >= 0:
                    self.recent[row, old] -= 1
                self.recent[row, ids[row]] += 1
                sample.history[sample.position] = ids[row]
                sample.position = (sample.position + 1) % len(sample.history)
        return ids

    def _join(self) -> None:
        samples = [s for group, *_ in self.joining for s in group]
        logits = torch.cat([lg for _, lg, _, _ in self.joining]).numpy()
        states = [st for _, _, st, _ in self.joining]
        state = tuple(torch.cat(parts, 1) for parts in zip(*states, strict=True))
        given = [c for *_, c in self.joining if c is not None]
        conditions = np.concatenate(given) if given else None
        self.joining = []
        if self.stepper is None:
            self.stepper = make_stepper(self.model, state, conditions, exact_rows=True)
        else:
            self.stepper.join(state, conditions)
        recent = np.zeros((len(samples), self.logits.shape[1]), np.int32)
        for row, sample in enumerate(samples):
            seen = sample.history[sample.history >= 0]
            np.add.at(recent[row], seen, 1)
        self.samples += samples
        self.logits = np.concatenate([self.logits, logits])
        self.recent = np.concatenate([self.recent, recent])
        self.rule_state = np.concatenate([self.rule_state, np.zeros(len(samples), np.int64)])
        self._regroup()

    def _keep(self, rows: list[int]) -> None:
        index = np.asarray(rows, dtype=np.int64)
        self.samples = [self.samples[r] for r in rows]
        self.logits, self.pending = self.logits[index], self.pending[index]
        self.recent, self.rule_state = self.recent[index], self.rule_state[index]
        if self.stepper is not None:  # kept when empty: the next request joins it (no rebuild)
            self.stepper.keep(index)
        self._regroup()

    def _regroup(self) -> None:
        """Rows by their settings: one adjust_logits call per distinct setting."""
        groups: dict[tuple, list[int]] = {}
        for row, sample in enumerate(self.samples):
            groups.setdefault(_settings(sample.config), []).append(row)
        configs = {_settings(s.config): s.config for s in self.samples}
        if len(groups) == 1:
            self.groups = [(next(iter(configs.values())), None)]
        else:
            self.groups = [(configs[k], np.asarray(rows)) for k, rows in groups.items()]
