"""Sampling from a trained model.

Three layers, each usable on its own:

- `adjust_logits` / `choose`: temperature, top-k, top-p and the repetition penalty
  on a (B, V) array of logits, and the draw itself (inverse CDF of one uniform);
- `TokenSampler`: many samples as one batch from one primed state, one model step
  per token for all of them (see stepper.py), each sample with its own random
  stream so a sample's text does not depend on how many are made with it;
- `sample_text`: token ids → text events, with stop strings cut off before they
  are printed and `min_length` honoured.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch

from lstmgen.config import SampleConfig, random_seed
from lstmgen.model import LSTMLanguageModel, State
from lstmgen.sampling.guard import copy_banned, guard_end
from lstmgen.sampling.stepper import make_stepper
from lstmgen.threads import ThreadChooser
from lstmgen.tokens import UNKNOWN_ID


def adjust_logits(
    logits: np.ndarray,
    config: SampleConfig,
    recent: np.ndarray | None = None,
    banned: Sequence[int] = (UNKNOWN_ID,),
    row_banned: np.ndarray | None = None,
) -> np.ndarray:
    """Logits (B, V) → filtered, scaled logits (a new array; -inf marks a token that cannot be
    drawn).

    `recent` (B, V) counts each token in the last repetition_window tokens; a token
    seen there has a positive logit divided by the penalty, a negative one multiplied.
    `banned` tokens are never drawn (the unknown token; at the BPE level also bytes the
    training text never held); `row_banned` (B, V) marks more per row (a BPE sample in the
    middle of a character may only go on with its continuation bytes).
    """
    logits = np.array(logits, dtype=np.float32, copy=True)
    logits[:, np.asarray(banned, dtype=np.int64)] = -np.inf
    if row_banned is not None:
        logits[row_banned] = -np.inf
    if recent is not None and config.repetition_penalty != 1:
        # Beyond these the text is the same, and float32 logits stay finite (1e-300 would
        # divide by zero, 1e300 overflow).
        p = min(max(config.repetition_penalty, 1e-30), 1e30)
        penalised = np.where(logits > 0, logits / p, logits * p)
        logits = np.where(recent > 0, penalised, logits)
    if not config.greedy:
        scale = np.float32(1.0 / config.temperature)
        if scale > 0:
            logits *= scale
        else:  # 1/T rounds to 0: every drawable token alike (-inf * 0 would be NaN)
            logits[np.isfinite(logits)] = 0.0
    vocab = logits.shape[-1]
    if config.top_k is not None and config.top_k < vocab:
        kth = np.partition(logits, vocab - config.top_k, axis=-1)[:, vocab - config.top_k, None]
        logits[logits < kth] = -np.inf
    if config.top_p is not None and config.top_p < 1:
        order = np.argsort(-logits, axis=-1, kind="stable")
        ordered = np.take_along_axis(logits, order, axis=-1)
        probs = softmax(ordered)
        # Drop a token when the more likely ones already hold top_p; the first one always stays.
        drop_ordered = (np.cumsum(probs, axis=-1) - probs) >= config.top_p
        drop_ordered[:, 0] = False  # also when top_p rounds to 0 in float32 (1e-300)
        drop = np.empty_like(drop_ordered)
        np.put_along_axis(drop, order, drop_ordered, axis=-1)
        logits[drop] = -np.inf
    return logits


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def choose(logits: np.ndarray, config: SampleConfig, uniforms: np.ndarray) -> np.ndarray:
    """Adjusted logits (B, V) and one uniform in [0, 1) per row → token ids (B,)."""
    if config.greedy:
        return logits.argmax(axis=-1)
    if len(logits) == 1:  # one stream: the same draw (same float64 threshold) in cheaper calls
        row = logits[0]
        cumulative = np.exp(row - row.max()).cumsum()
        return np.array([np.count_nonzero(cumulative <= uniforms[0] * cumulative[-1])])
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    cumulative = np.cumsum(weights, axis=-1)
    # The first token whose cumulative weight exceeds u * total (never a token of weight 0).
    return (cumulative <= uniforms[:, None] * cumulative[:, -1:]).sum(axis=-1)


@torch.no_grad()
def prime_state(
    model: LSTMLanguageModel,
    prime_ids: torch.Tensor,
    conditions: np.ndarray | None = None,
    chunk: int = 1024,
) -> tuple[torch.Tensor, State]:
    """Run the prime (T,) through the model in chunks, for one stream or for one per row of
    conditions (B, C); return the last logits (B, V) and the state (L, B, H)."""
    device = prime_ids.device
    given = None if conditions is None else torch.as_tensor(conditions, device=device)
    rows = 1 if given is None else len(given)
    state = None
    logits = None
    for start in range(0, len(prime_ids), chunk):
        ids = prime_ids[start : start + chunk][None].expand(rows, -1)
        out, _, state = model(ids, state, conditions=given)
        logits = out[:, -1]
    assert logits is not None and state is not None
    return logits, state


def prime_streams(
    model: LSTMLanguageModel, prime_ids: torch.Tensor, n: int, conditions: np.ndarray | None
) -> tuple[torch.Tensor, State]:
    """The prime run for n streams (their conditions (n, C), if any): once when they share
    their conditions, else one row each. Last logits (n, V) and the state (L, n, H)."""
    if conditions is not None and len(np.unique(conditions, axis=0)) > 1:
        return prime_state(model, prime_ids, conditions)
    first = None if conditions is None else conditions[:1]
    logits, state = prime_state(model, prime_ids, first)
    return logits.expand(n, -1), expand_state(state, n)


def expand_state(state: State, n: int) -> State:
    """Copy one primed state (L, 1, H) to n streams (L, n, H)."""
    if isinstance(state, tuple):
        return tuple(s.expand(-1, n, -1).contiguous() for s in state)  # type: ignore[return-value]
    return state.expand(-1, n, -1).contiguous()


class TokenSampler:
    """Draws the next token of every live sample; one model step per call serves them all.

    Sample i draws its uniforms from its own generator seeded with (seed, i), so the
    text of sample i is the same whether it is made alone or with others (up to
    float rounding, which differs between batch sizes only in the last bits).
    """

    def __init__(
        self,
        model: LSTMLanguageModel,
        prime_ids: torch.Tensor,
        config: SampleConfig,
        banned: Sequence[int] = (UNKNOWN_ID,),
        rules=None,
        conditions: np.ndarray | None = None,
        first_sample: int = 0,
        guard=None,
    ):
        model.eval()
        self.config = config
        self.banned = np.asarray(banned, dtype=np.int64)
        # e.g. bpe.Utf8Rules: a small automaton over tokens, one state per sample
        self.rules = rules
        self.rule_state = np.zeros(config.num_samples, dtype=np.int64)
        # guard.py's CopyGuard (--max-copy): one match state per sample; `exhausted` marks the
        # rows whose every token would copy too long a span (those samples end there)
        self.copies = [guard.start() for _ in range(config.num_samples)] if guard else None
        self.exhausted = np.zeros(config.num_samples, dtype=bool)
        self.seed = config.seed if config.seed is not None else random_seed()
        n = config.num_samples
        device = next(model.parameters()).device
        logits, state = prime_streams(model, prime_ids.to(device), n, conditions)
        self.logits = logits.float().cpu().numpy().copy()
        self.stepper = make_stepper(model, state, conditions)
        self.threads = ThreadChooser(recheck_s=5.0, trial_steps=8)  # steps are ~0.2 ms: 16 tries
        self.samples = np.arange(n)  # which sample each live row is
        # first_sample: these are samples first_sample, first_sample + 1, ... of a larger set
        # made batch by batch; each keeps its own stream
        self.generators = [
            np.random.Generator(np.random.PCG64([self.seed, first_sample + i])) for i in range(n)
        ]
        self.pending: np.ndarray | None = None  # tokens drawn but not yet fed to the model
        self.recent = self.history = None
        if config.repetition_penalty != 1:
            vocab, window = self.logits.shape[1], config.repetition_window
            self.history = np.full((n, window), -1, np.int64)  # ring buffer of the last tokens
            tail = prime_ids[-window:].cpu().numpy()
            self.history[:, : len(tail)] = tail
            self.position = len(tail) % window
            self.recent = np.zeros((n, vocab), np.int32)
            for row in range(n):
                np.add.at(self.recent[row], tail, 1)

    def next(self) -> np.ndarray:
        """Token ids (live rows,) of the next position."""
        if self.pending is not None:
            self.threads.step_starts(time.perf_counter())
            self.logits = self.stepper.step(self.pending)
            self.threads.step_ends(time.perf_counter())
        row_banned = self.rules.banned[self.rule_state] if self.rules is not None else None
        if self.copies is not None:
            row_banned, self.exhausted = copy_banned(
                self.copies, row_banned, self.banned, self.logits.shape
            )
        logits = adjust_logits(self.logits, self.config, self.recent, self.banned, row_banned)
        uniforms = np.array([self.generators[s].random() for s in self.samples.tolist()])
        ids = choose(logits, self.config, uniforms)
        if self.copies is not None:
            for copies, token in zip(self.copies, ids.tolist(), strict=True):
                copies.advance(token)
        if self.rules is not None:
            self.rule_state = self.rules.next[self.rule_state, ids]
        if self.history is not None:
            rows = np.arange(len(ids))
            old = self.history[:, self.position]
            seen = old >= 0
            np.subtract.at(self.recent, (rows[seen], old[seen]), 1)
            np.add.at(self.recent, (rows, ids), 1)
            self.history[:, self.position] = ids
            self.position = (self.position + 1) % self.history.shape[1]
        self.pending = ids
        return ids

    def keep(self, rows: np.ndarray) -> None:
        """Go on with only these live rows (the other samples have ended)."""
        self.stepper.keep(rows)
        self.samples = self.samples[rows]
        self.rule_state = self.rule_state[rows]
        if self.copies is not None:
            self.copies = [self.copies[r] for r in rows.tolist()]
        self.logits = self.logits[rows]
        if self.pending is not None:
            self.pending = self.pending[rows]
        if self.history is not None:
            self.history, self.recent = self.history[rows], self.recent[rows]


class StopMatcher:
    """Holds back text that may start a stop string; reports where a stop string appears."""

    def __init__(self, stops: list[str], min_length: int = 0):
        self.stops, self.min_length = stops, min_length
        self.held = ""
        self.emitted = 0  # characters already let through

    def feed(self, text: str) -> tuple[str, bool]:
        """Add generated text; return (text safe to show, whether a stop string was found)."""
        self.held += text
        start = max(0, self.min_length - self.emitted)
        found = [i for i in (self.held.find(s, start) for s in self.stops) if i >= 0]
        if found:
            out, self.held = self.held[: min(found)], ""
            self.emitted += len(out)
            return out, True
        keep = max(
            (
                k
                for s in self.stops
                for k in range(min(len(s) - 1, len(self.held)), 0, -1)
                if self.held.endswith(s[:k])
            ),
            default=0,
        )
        out = self.held[: len(self.held) - keep]
        self.held = self.held[len(out) :]
        self.emitted += len(out)
        return out, False

    def flush(self) -> str:
        out, self.held = self.held, ""
        return out


class Event(NamedTuple):
    """A piece of one sample's text; `end` is set on the sample's last event ("stop" or
    "length")."""

    sample: int
    text: str
    end: str | None = None


class _TextOf:
    """A stateless streaming decoder made from a token_text function."""

    def __init__(self, token_text):
        self.feed = token_text

    def flush(self) -> str:
        return ""


def sample_text(
    model: LSTMLanguageModel,
    token_text,
    prime_ids: torch.Tensor,
    config: SampleConfig,
    *,
    decoder=None,
    banned: Sequence[int] = (UNKNOWN_ID,),
    rules=None,
    conditions: np.ndarray | None = None,
    first_sample: int = 0,
    guard=None,
) -> Iterator[Event]:
    """Generate config.num_samples texts as one batch, yielding pieces as they are made.

    The prime is run through the model before this returns (so a caller timing the
    iteration times generation alone). `token_text(id) -> str` is the tokenizer's; or
    `decoder()` makes one streaming decoder per sample (`feed(id) -> str`, `flush() -> str`),
    for tokens whose text depends on the ones before (word spacing, bytes of a character).
    Every sample ends with exactly one event whose end is set. A conditioned model takes each
    sample's condition numbers, conditions (num_samples, C). `first_sample`: the batch's
    samples are these of a larger set (sample i draws from the stream (seed, first_sample + i));
    its events still count from 0. `guard` (guard.CopyGuard) removes the tokens that would
    copy more than --max-copy characters of the training text.
    """
    if config.length == 0:
        return iter([Event(i, "", "length") for i in range(config.num_samples)])
    return _events(
        TokenSampler(model, prime_ids, config, banned, rules, conditions, first_sample, guard),
        decoder or (lambda: _TextOf(token_text)),
        config,
    )


def text_of(token: int, decoder, matcher: StopMatcher | None, last: bool) -> tuple[str, str | None]:
    """A sample's new text for its next token, and why it ends there ("stop", "length") or None."""
    text, end = decoder.feed(token), None
    if last:
        text += decoder.flush()
    if matcher is not None:
        text, stopped = matcher.feed(text)
        if stopped:
            end = "stop"
        elif last:
            text += matcher.flush()
    if end is None and last:
        end = "length"
    return text, end


def _events(sampler: TokenSampler, new_decoder, config: SampleConfig) -> Iterator[Event]:
    n = config.num_samples
    matchers = [
        StopMatcher(config.stop, config.min_length) if config.stop else None for _ in range(n)
    ]
    decoders = [new_decoder() for _ in range(n)]
    made = 0
    while len(sampler.samples):
        ids = sampler.next()
        made += 1
        ended = []
        pairs = zip(sampler.samples.tolist(), ids.tolist(), strict=True)
        for row, (sample, token) in enumerate(pairs):
            if sampler.exhausted[row]:  # every token would copy more than --max-copy: it ends
                text, end = guard_end(decoders[sample], matchers[sample])
            else:
                text, end = text_of(
                    token, decoders[sample], matchers[sample], made == config.length
                )
            if text or end:
                yield Event(sample, text, end)
            if end:
                ended.append(row)
        if ended:
            if made == config.length:
                return
            sampler.keep(np.setdiff1d(np.arange(len(sampler.samples)), ended))
