"""A trained model and its tokenizer: `load(run_dir)` → Model: generate, stream, evaluate."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from lstmgen.checkpoint import load_weights
from lstmgen.config import RunConfig, SampleConfig, bits_per_char
from lstmgen.data.store import TokenStore
from lstmgen.device import resolve_device
from lstmgen.errors import LstmgenError, warn
from lstmgen.files import recover
from lstmgen.metrics import evaluate_tokens, nats_by_position
from lstmgen.model import LSTMLanguageModel
from lstmgen.sampling.sampler import Event, sample_text
from lstmgen.tokens import Conditions, load_tokenizer
from lstmgen.tokens.conditions import conditions_of


class SampleStream:
    """The events of stream_samples, and how many tokens each sample has taken so far.

    A token need not make text at once (a word's spacing, the bytes of one character), and the
    tokens of a --stop string make none: `tokens[i]` counts the model steps of sample i.
    """

    def __init__(self, make_events, num_samples: int):
        self.tokens = [0] * num_samples
        self._events = make_events(self._counted)

    def _counted(self, sample: int, decoder):
        stream = self

        class Counted:
            def feed(self, token: int) -> str:
                stream.tokens[sample] += 1
                return decoder.feed(token)

            def flush(self) -> str:
                return decoder.flush()

        return Counted()

    def __iter__(self) -> SampleStream:
        return self

    def __next__(self) -> Event:
        return next(self._events)


class Model:
    """A trained model with its tokenizer: generate, stream and evaluate text."""

    def __init__(self, module: LSTMLanguageModel, tokenizer, *, run_dir: Path | None = None):
        self.module, self.tokenizer, self.run_dir = module, tokenizer, run_dir
        self.module.eval()

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def encode(self, text: str, *, what: str = "text") -> np.ndarray:
        """Token ids for text; unseen characters (words) become the unknown id, with one warning."""
        ids = self.tokenizer.encode(text)
        unknown = int((ids == self.tokenizer.unknown_id).sum())
        if unknown:
            unit = "character" if self.tokenizer.kind == "char" else "word"
            seen = self.tokenizer.unknown_words(text)
            joiner = "" if unit == "character" else " "
            shown = joiner.join(seen[:10]) + ("…" if len(seen) > 10 else "")
            warn(
                f"{what} has {unknown} {unit}(s) not in this model's "
                f"{self.tokenizer.vocab_size - 1}-{unit} vocabulary ({shown!r}); "
                f"they were mapped to the unknown {unit}"
            )
        return ids

    def prime_ids(
        self, prime: str, *, quiet: bool = False, condition: str | None = None
    ) -> torch.Tensor:
        """The prime's token ids (T,); no prime: a line break. quiet: no unknown-token warning.
        With a condition: as in training, a separator, the condition's control token, then the
        prime."""
        if condition is not None:
            conditions = self._conditions("--condition")
            control = [self.tokenizer.control_id(condition)]
            text = []
            if prime:
                text = (
                    self.tokenizer.encode(prime) if quiet else self.encode(prime, what="the prime")
                )
            start = self.tokenizer.encode(conditions.separator)
            return torch.tensor([*start, *control, *text], dtype=torch.int64)
        if prime:
            ids = self.tokenizer.encode(prime) if quiet else self.encode(prime, what="the prime")
            return torch.from_numpy(ids)
        # No prime: start as if after a line break (or the most common character).
        start = self.tokenizer.encode("\n")[:1]
        if len(start) == 0 or start[0] == self.tokenizer.unknown_id:
            start = np.array([1], dtype=np.int64)
        return torch.from_numpy(start)

    def stream_samples(
        self,
        prime: str = "",
        settings: SampleConfig | None = None,
        *,
        first_sample: int = 0,
        **more,
    ) -> SampleStream:
        """Yield Event(sample, text, end) pieces of num_samples texts made as one batch.

        Settings are a SampleConfig or its fields as keywords: length, min_length, temperature,
        top_k, top_p, repetition_penalty, repetition_window, stop, seed, num_samples. The
        iterator's `tokens[i]` counts the tokens sample i has taken so far. `first_sample`:
        these are samples first_sample, first_sample + 1, ... of a larger set made batch by
        batch with one seed: each draws from the stream it has in the whole set. Events still
        count from 0.
        """
        config = SampleConfig.build(settings, **more)
        prime_ids = self.prime_ids(prime, condition=config.condition)
        # The first word's spacing follows the prime's text (not the separator before a condition).
        context = self.tokenizer.encode(prime).tolist() if prime else []

        banned = self.tokenizer.never_generated
        if config.condition is not None:
            # Its control token may be drawn (and prints nothing) where a document ends, so the
            # documents after the first keep the condition too; the other conditions' may not.
            chosen = self.tokenizer.control_id(config.condition)
            banned = [i for i in banned if i != chosen]

        def events(counted) -> Iterator[Event]:
            made = iter(range(config.num_samples))  # sample_text makes one decoder per sample
            return sample_text(
                self.module,
                self.tokenizer.token_text,
                prime_ids,
                config,
                decoder=lambda: counted(next(made), self.tokenizer.stream_decoder(context)),
                banned=banned,
                rules=getattr(self.tokenizer, "rules", None),
                first_sample=first_sample,
            )

        return SampleStream(events, config.num_samples)

    def stream(
        self, prime: str = "", settings: SampleConfig | None = None, **more
    ) -> Iterator[str]:
        """Yield one sample's text piece by piece as it is generated (the prime is not repeated)."""
        config = SampleConfig.build(settings, **more)
        if config.num_samples != 1:
            raise LstmgenError(
                "stream() makes one sample; use stream_samples() or "
                "generate(num_samples=...) for several"
            )
        for event in self.stream_samples(prime, config):
            if event.text:
                yield event.text

    def generate(
        self, prime: str = "", settings: SampleConfig | None = None, **more
    ) -> str | list[str]:
        """Generated text after the prime; a list of texts when num_samples > 1."""
        config = SampleConfig.build(settings, **more)
        texts: list[list[str]] = [[] for _ in range(config.num_samples)]
        for event in self.stream_samples(prime, config):
            texts[event.sample].append(event.text)
        joined = ["".join(pieces) for pieces in texts]
        return joined if config.num_samples > 1 else joined[0]

    def evaluate(self, text: str) -> dict:
        """Quality on text: bits per character (total bits ÷ characters), nats/token, perplexity."""
        ids = self.encode(text, what="the evaluation text")
        if len(ids) < 2:
            raise LstmgenError("the evaluation text needs at least 2 tokens")
        nats, count = evaluate_tokens(self.module, ids)
        per_token = float(nats) / int(count)
        bits = float(bits_per_char(per_token, len(ids) / len(text)))
        return {  # plain floats and ints: json.dumps takes it as it is
            "bits_per_char": bits,
            "nats_per_char": bits * math.log(2),
            "nats_per_token": per_token,
            "perplexity": math.exp(min(per_token, 700.0)),  # per token
            "characters": len(text),
            "tokens": len(ids),
            "level": self.tokenizer.kind,
            "unknown_tokens": int((ids == self.tokenizer.unknown_id).sum()),
            "unknown_characters": int(self.tokenizer.unknown_characters(text)),
        }

    def _conditions(self, flag: str) -> Conditions:
        conditions = conditions_of(self.tokenizer)
        if conditions is None:
            where = f"{self.run_dir} was" if self.run_dir else "this model was"
            raise LstmgenError(
                f"{flag} needs a model trained with --condition-column (or --condition-field); "
                f"{where} trained without conditions"
            )
        return conditions

    def evaluate_by_condition(self, ids: np.ndarray | None = None) -> dict:
        """Bits/char per condition of the run's held-out documents (or of token ids from a
        conditioned store): each document runs from its control token to the next one;
        control tokens are not scored."""
        conditions = self._conditions("--by-condition")
        if ids is None:
            if self.run_dir is None:
                raise LstmgenError("give the token ids: this model was not loaded from a run")
            ids = TokenStore.open(self.run_dir / "data").val
        ids = np.asarray(ids, dtype=np.int64)
        nats = nats_by_position(self.module, ids)  # nats[i]: of predicting ids[i + 1]
        value_of = {i: v for v, i in self.tokenizer.control_ids.items()}
        starts = np.flatnonzero(np.isin(ids, list(value_of)))
        totals = {v: [0, 0, 0, 0.0] for v in conditions.values}  # documents, chars, tokens, nats
        for k, start in enumerate(starts):
            end = int(starts[k + 1]) if k + 1 < len(starts) else len(ids)
            row = totals[value_of[int(ids[start])]]
            row[0] += 1
            row[1] += len(self.tokenizer.decode(ids[start + 1 : end]))
            row[2] += end - start - 1
            row[3] += float(nats[start : end - 1].sum())
        by_condition = {
            value: {
                "documents": documents,
                "characters": characters,
                "tokens": tokens,
                "bits_per_char": nats_sum / math.log(2) / characters if characters else None,
            }
            for value, (documents, characters, tokens, nats_sum) in totals.items()
        }
        characters = sum(row[1] for row in totals.values())
        return {
            "bits_per_char": sum(row[3] for row in totals.values()) / math.log(2) / characters,
            "characters": characters,
            "column": conditions.column,
            "conditions": by_condition,
        }


def build_model(config: RunConfig, tokenizer) -> LSTMLanguageModel:
    """The (untrained) module a run's config describes; its vocabulary must be the tokenizer's."""
    if config.model.vocab_size != tokenizer.vocab_size:
        raise LstmgenError(
            "config.json and tokenizer.json disagree on the vocabulary size; "
            "the run directory is inconsistent"
        )
    return LSTMLanguageModel(config.model)


def load(run_dir: str | Path, *, checkpoint: str = "best", device: str = "auto") -> Model:
    """Load a run directory to generate or evaluate (weights of best/ by default, or 'latest')."""
    run_dir = Path(run_dir)
    config = RunConfig.read(run_dir)
    if checkpoint not in ("best", "latest"):
        raise LstmgenError(f"checkpoint {checkpoint!r} must be best or latest")
    weights_dir = run_dir
    if checkpoint == "best":
        recover(run_dir / "best", discard_uncommitted=False)
        if (run_dir / "best" / "model.safetensors").is_file():
            weights_dir = run_dir / "best"
    tokenizer = load_tokenizer(run_dir / "tokenizer.json")
    module = build_model(config, tokenizer)
    load_weights(module, weights_dir / "model.safetensors")
    return Model(module.to(resolve_device(device)), tokenizer, run_dir=run_dir)
