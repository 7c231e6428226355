"""A trained model and its tokenizer: `load(run_dir)` → Model: generate, stream, evaluate."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lstmgen.checkpoint import check_weights, load_weights
from lstmgen.config import RunConfig, SampleConfig, random_seed
from lstmgen.data.novelty import novelty, training_indexes
from lstmgen.data.store import TokenStore
from lstmgen.device import resolve_device
from lstmgen.errors import LstmgenError, warn
from lstmgen.evaluation import CHUNK_CHARS, evaluate_pieces
from lstmgen.files import recover
from lstmgen.metrics import document_nats, nats_by_position
from lstmgen.model import LSTMLanguageModel
from lstmgen.precision import check_precision, choose
from lstmgen.sampling.guard import guard_for_run
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
        self.conditions = conditions_of(tokenizer)  # None: trained without conditions
        self.precision, self.precision_reason = "fp32", "asked for"  # load() sets them
        self.module.eval()
        self._guards: dict[int, object] = {}  # by --max-copy
        self._indexes: list | None = None  # the copy indexes of the novelty figures

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

    def prime_ids(self, prime: str, *, quiet: bool = False) -> torch.Tensor:
        """The prime's token ids (T,); no prime: a line break. quiet: no unknown-token warning.
        A conditioned model starts a document as in training: a separator, the document mark,
        then the prime."""
        if self.conditions is not None:
            text = []
            if prime:
                text = (
                    self.tokenizer.encode(prime) if quiet else self.encode(prime, what="the prime")
                )
            start = self.tokenizer.encode(self.conditions.separator)
            return torch.tensor([*start, self.tokenizer.document_id, *text], dtype=torch.int64)
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
        top_k, top_p, repetition_penalty, repetition_window, stop, max_copy, seed, num_samples.
        The iterator's `tokens[i]` counts the tokens sample i has taken so far. `first_sample`:
        these are samples first_sample, first_sample + 1, ... of a larger set made batch by
        batch with one seed: each draws from the stream it has in the whole set, and a
        conditioned model's batch draws the conditions not asked for on its own. Events still
        count from 0.
        """
        config = SampleConfig.build(settings, **more)
        if config.seed is None:  # drawn here: the conditions not asked for are drawn with it
            config = replace(config, seed=random_seed())
        conditions = self.condition_rows(config.condition, config.num_samples, config.seed)
        if first_sample and conditions is not None:  # a later batch: conditions of its own
            state = np.random.SeedSequence([config.seed, first_sample]).generate_state(1)
            conditions = self.condition_rows(config.condition, config.num_samples, int(state[0]))
        prime_ids = self.prime_ids(prime)
        # The first word's spacing follows the prime's text (not the separator before a document).
        context = self.tokenizer.encode(prime).tolist() if prime else []

        def events(counted) -> Iterator[Event]:
            made = iter(range(config.num_samples))  # sample_text makes one decoder per sample
            return sample_text(
                self.module,
                self.tokenizer.token_text,
                prime_ids,
                config,
                decoder=lambda: counted(next(made), self.tokenizer.stream_decoder(context)),
                banned=self.banned,
                rules=getattr(self.tokenizer, "rules", None),
                conditions=conditions,
                first_sample=first_sample,
                guard=self.copy_guard(config.max_copy),
            )

        return SampleStream(events, config.num_samples)

    def copy_guard(self, max_copy: int | None):
        """The guard keeping copies of the training text at most max_copy characters (None:
        none); the run's index is built the first time one is asked for."""
        if max_copy is not None and max_copy not in self._guards:
            self._guards[max_copy] = guard_for_run(self.run_dir, self.tokenizer, max_copy)
        return self._guards.get(max_copy)

    def novelty(self, text: str, *, build: bool = True) -> dict | None:
        """{longest_copy, copied_50} of text against the run's training text (and its base's);
        build=False: None unless the index is already built."""
        if self._indexes is None or (not self._indexes and build):
            self._indexes = training_indexes(self.run_dir, build=build, quiet=True)
        return novelty(text, self._indexes) if self._indexes else None

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

    def evaluate(
        self, text: str | Iterable[str], *, condition=None, chunk_chars=CHUNK_CHARS
    ) -> dict:
        """Quality on text: bits per character (total bits ÷ characters), nats/token, perplexity.

        text: a str, or its pieces (read, tokenized and scored as they come, chunk_chars at a
        time: memory does not grow with the text). A conditioned model scores the text as one
        document: under the condition given ({"Score": "5"} or "Score=5"), else under the
        mixture of the first column's values weighted by their training share (the text's
        marginal likelihood)."""
        if self.conditions is None and condition:
            self.require_conditions("--condition")
        pieces = [text] if isinstance(text, str) else text
        return evaluate_pieces(
            self.module,
            self.tokenizer,
            self.conditions,
            pieces,
            condition=condition,
            chunk_chars=chunk_chars,
        )

    @property
    def banned(self) -> list[int]:
        """Tokens generation never draws. A conditioned model's document mark may be drawn (it
        prints nothing) where a document ends: the next document has the same conditions."""
        if self.conditions is None:
            return list(self.tokenizer.never_generated)
        return [i for i in self.tokenizer.never_generated if i != self.tokenizer.document_id]

    def condition_rows(self, asked, n: int, seed: int) -> np.ndarray | None:
        """Each of n streams' condition numbers (n, C): the values asked for ({"Score": "5"},
        ["Score=5"] or "5"), the other columns drawn from their training share with the seed;
        None for a model trained without conditions."""
        if self.conditions is None:
            if asked:
                self.require_conditions("--condition")
            return None
        chosen = self.conditions.asked(asked)
        rng = np.random.default_rng([seed, 1])  # not the samples' streams (seeded [seed, i])
        rows = np.zeros((n, len(self.conditions.columns)), np.int64)
        for k, column in enumerate(self.conditions.columns):
            rows[:, k] = (
                chosen[k] if k in chosen else rng.choice(len(column.values), n, p=column.prior)
            )
        return rows

    def require_conditions(self, flag: str) -> Conditions:
        conditions = self.conditions
        if conditions is None:
            where = f"{self.run_dir} was" if self.run_dir else "this model was"
            raise LstmgenError(
                f"{flag} needs a model trained with --condition-column (or --condition-field); "
                f"{where} trained without conditions"
            )
        return conditions

    def evaluate_by_condition(self) -> dict:
        """Bits/char of the run's held-out documents, per value of each condition column: each
        document runs from its mark to the next one, scored under its own conditions."""
        conditions = self.require_conditions("--by-condition")
        if self.run_dir is None:
            raise LstmgenError(
                "evaluate_by_condition reads a run's store: load the model from a run"
            )
        store = TokenStore.open(self.run_dir / "data")
        ids, documents = np.asarray(store.val, dtype=np.int64), store.documents("val")
        nats = nats_by_position(  # nats[i]: of predicting ids[i + 1]
            self.module, ids, documents=documents
        )
        ends = [*documents.starts[1:].tolist(), len(ids)]
        rows = []  # (characters, tokens, nats) of each document
        for start, end in zip(documents.starts.tolist(), ends, strict=True):
            characters = len(self.tokenizer.decode(ids[start + 1 : end]))
            rows.append((characters, end - start - 1, float(nats[start : end - 1].sum())))
        table = np.array(rows, dtype=np.float64).reshape(-1, 3)
        columns = []
        for k, column in enumerate(conditions.columns):
            by_value = {}
            for number, value in enumerate(column.values):
                mine = table[documents.values[:, k] == number]
                characters = int(mine[:, 0].sum())
                by_value[value] = {
                    "documents": len(mine),
                    "characters": characters,
                    "tokens": int(mine[:, 1].sum()),
                    "bits_per_char": (
                        float(mine[:, 2].sum()) / math.log(2) / characters if characters else None
                    ),
                }
            columns.append({"column": column.name, "conditions": by_value})
        characters = int(table[:, 0].sum())
        return {
            "bits_per_char": float(table[:, 2].sum()) / math.log(2) / characters,
            "characters": characters,
            "column": columns[0]["column"],  # the first column's, as before several columns
            "conditions": columns[0]["conditions"],
            "columns": columns,
        }

    def document_ids(self, text: str) -> np.ndarray:
        """A document's ids as in training: the separator, the document mark, its text."""
        start = self.tokenizer.encode(self.require_conditions("classify").separator)
        text_ids = self.tokenizer.encode(text)
        return np.concatenate([start, [self.tokenizer.document_id], text_ids]).astype(np.int64)

    def classify(
        self,
        texts: list[str],
        *,
        column: str | None = None,
        labels: list[dict] | None = None,
    ) -> dict:
        """The model as a classifier (Bayes' rule): each text's log-likelihood under every value
        of a condition column (the first by default), the posterior with the training prior,
        and the predicted value. A run with several columns scores the others at each
        document's own value when `labels` ({column: value} per text) has it, else at their
        most common value."""
        conditions = self.require_conditions("classify")
        k = conditions.column(column)
        target = conditions.columns[k]
        base = np.zeros((len(texts), len(conditions.columns)), np.int64)
        for j, other in enumerate(conditions.columns):
            common = int(np.argmax(other.prior))
            for i in range(len(texts)):
                given = (labels[i] or {}).get(other.name) if labels else None
                base[i, j] = other.of_document(given) if given is not None else common
        documents = [self.document_ids(text) for text in texts]
        values = len(target.values)
        rows = np.repeat(base, values, axis=0)  # (N·K, C): document i under each value
        rows[:, k] = np.tile(np.arange(values), len(texts))
        start = len(self.tokenizer.encode(conditions.separator)) + 1
        nats = document_nats(
            self.module, [d for d in documents for _ in range(values)], rows, skip=start
        ).reshape(len(texts), values)
        log_likelihood = -nats
        prior = np.log(np.maximum(np.array(target.prior), 1e-12))
        joint = log_likelihood + prior
        posterior = np.exp(joint - joint.max(1, keepdims=True))
        posterior /= posterior.sum(1, keepdims=True)
        return {
            "column": target.name,
            "values": list(target.values),
            "prior": target.prior,
            "log_likelihood": log_likelihood,  # (N, K) nats
            "posterior": posterior,  # (N, K)
            "predicted": [target.values[i] for i in posterior.argmax(1)],
            "characters": [len(text) for text in texts],
        }


def build_model(config: RunConfig, tokenizer) -> LSTMLanguageModel:
    """The (untrained) module a run's config describes; its vocabulary must be the tokenizer's."""
    if config.model.vocab_size != tokenizer.vocab_size:
        raise LstmgenError(
            "config.json and tokenizer.json disagree on the vocabulary size; "
            "the run directory is inconsistent"
        )
    return LSTMLanguageModel(config.model)


def load(
    run_dir: str | Path,
    *,
    checkpoint: str = "best",
    device: str = "auto",
    precision: str = "auto",
    verbose: bool = False,
) -> Model:
    """Load a run directory to generate or evaluate (weights of best/ by default, or 'latest').

    precision: fp32, bf16, int8 or auto (precision.py), chosen: `model.precision`; verbose:
    say on stderr what auto chose where it is not today's fp32."""
    run_dir = Path(run_dir)
    check_precision(precision)
    config = RunConfig.read(run_dir)
    if checkpoint not in ("best", "latest"):
        raise LstmgenError(f"checkpoint {checkpoint!r} must be best or latest")
    weights_dir = run_dir
    if checkpoint == "best":
        recover(run_dir / "best", discard_uncommitted=False)
        if (run_dir / "best" / "model.safetensors").is_file():
            weights_dir = run_dir / "best"
    tokenizer = load_tokenizer(run_dir / "tokenizer.json")
    weights = weights_dir / "model.safetensors"
    # before the model is built: a damaged config.json must not allocate what it says
    check_weights(config.model, weights, config_name=str(run_dir / "config.json"))
    module = build_model(config, tokenizer)
    load_weights(module, weights)
    where, kept = resolve_device(device), "best" if weights_dir != run_dir else "latest"
    computing, chosen, why = choose(
        precision, module.to(where), where, run_dir=run_dir, checkpoint=kept, weights=weights,
        tokens_per_char=config.tokens_per_char, verbose=verbose,
    )  # fmt: skip
    model = Model(computing, tokenizer, run_dir=run_dir)
    model.precision, model.precision_reason = chosen, why
    return model
