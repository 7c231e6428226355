"""The Python API: lstmgen.train(...), lstmgen.load(...) and the Model it returns."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .batches import max_batch_size
from .checkpoint import (
    RUN_FORMAT,
    load_trainer_state,
    load_weights,
    read_config,
    read_progress,
    recover,
    save_trainer_state,
    save_weights,
    write_checkpoint,
    write_json,
)
from .errors import LstmgenError, parse_duration, warn
from .generate import Event, SampleConfig, sample_text
from .model import LSTMLanguageModel, ModelConfig
from .report import RunReporter, truncate_metrics
from .preparation import PREPARE_FIELDS, PrepareConfig, summary, write_store
from .sources import resolve_sources
from .store import TokenStore, is_token_store, refuse_incomplete_store
from .tokenizers import load_tokenizer
from .train import Progress, Trainer, TrainConfig, bits_per_char, evaluate_tokens, resolve_device

MODEL_FIELDS = {f.name for f in fields(ModelConfig)} - {"vocab_size"}
TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}
# What may change when a run is resumed: how long it goes on, where it runs, and the peak
# learning rate (the way out of a run that keeps diverging).
RESUMABLE_FIELDS = {"epochs", "max_time", "max_steps", "patience", "eval_every", "save_every", "device", "lr"}


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
            shown = ("" if unit == "character" else " ").join(seen[:10]) + ("…" if len(seen) > 10 else "")
            warn(
                f"{what} has {unknown} {unit}(s) not in this model's {self.tokenizer.vocab_size - 1}-{unit} "
                f"vocabulary ({shown!r}); they were mapped to the unknown {unit}"
            )
        return ids

    def _prime_ids(self, prime: str) -> torch.Tensor:
        if prime:
            return torch.from_numpy(self.encode(prime, what="the prime"))
        # No prime: start as if after a line break (or the most common character).
        start = self.tokenizer.encode("\n")[:1]
        if len(start) == 0 or start[0] == self.tokenizer.unknown_id:
            start = np.array([1], dtype=np.int64)
        return torch.from_numpy(start)

    def stream_samples(self, prime: str = "", **settings) -> Iterator[Event]:
        """Yield Event(sample, text, end) pieces of num_samples texts made as one batch.

        Settings are SampleConfig's: length, min_length, temperature, top_k, top_p,
        repetition_penalty, repetition_window, stop, seed, num_samples.
        """
        config = SampleConfig(**settings)
        prime_ids = self._prime_ids(prime)
        context = prime_ids.tolist() if prime else []  # spacing of the first word follows the prime
        decoder = lambda: self.tokenizer.stream_decoder(context)  # noqa: E731
        return sample_text(
            self.module, self.tokenizer.token_text, prime_ids, config, decoder=decoder, banned=self.tokenizer.never_generated,
            rules=getattr(self.tokenizer, "rules", None),
        )

    def stream(self, prime: str = "", **settings) -> Iterator[str]:
        """Yield the text of one sample piece by piece as it is generated (the prime is not repeated)."""
        if settings.get("num_samples", 1) != 1:
            raise LstmgenError("stream() makes one sample; use stream_samples() or generate(num_samples=...) for several")
        for event in self.stream_samples(prime, **settings):
            if event.text:
                yield event.text

    def generate(self, prime: str = "", **settings) -> str | list[str]:
        """Generated text after the prime; a list of texts when num_samples > 1 (see stream_samples)."""
        config = SampleConfig(**settings)
        texts = [[] for _ in range(config.num_samples)]
        for event in self.stream_samples(prime, **settings):
            texts[event.sample].append(event.text)
        joined = ["".join(pieces) for pieces in texts]
        return joined if config.num_samples > 1 else joined[0]

    def evaluate(self, text: str) -> dict:
        """Quality on text: bits per character (total bits ÷ characters), nats per token, perplexity per token."""
        ids = self.encode(text, what="the evaluation text")
        if len(ids) < 2:
            raise LstmgenError("the evaluation text needs at least 2 tokens")
        nats, count = evaluate_tokens(self.module, ids)
        per_token = nats / count
        tokens_per_char = len(ids) / len(text)
        bits = bits_per_char(per_token, tokens_per_char)
        unknown = int((ids == self.tokenizer.unknown_id).sum())
        return {
            "bits_per_char": bits,
            "nats_per_char": bits * np.log(2),
            "nats_per_token": per_token,
            "perplexity": float(np.exp(per_token)),  # per token
            "characters": len(text),
            "tokens": len(ids),
            "level": self.tokenizer.kind,
            "unknown_tokens": unknown,
            "unknown_characters": self.tokenizer.unknown_characters(text),
        }


def load(run_dir: str | Path, *, checkpoint: str = "best", device: str = "auto") -> Model:
    """Load a run directory for generation or evaluation (weights of best/ by default, or 'latest')."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
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


def build_model(config: dict, tokenizer) -> LSTMLanguageModel:
    model_config = ModelConfig.from_dict(config["model"])
    if model_config.vocab_size != tokenizer.vocab_size:
        raise LstmgenError("config.json and tokenizer.json disagree on the vocabulary size; the run directory is inconsistent")
    return LSTMLanguageModel(model_config)


@dataclass
class TrainResult:
    """What lstmgen.train returns."""

    run_dir: Path
    stopped_because: str
    steps: int
    epochs: float
    tokens: int
    elapsed_s: float
    best_val_bits_per_char: float | None
    last_val_bits_per_char: float | None


def _make_run(sources, out: Path, options: dict, *, overwrite: bool, quiet: bool) -> dict:
    """Create a new run directory: prepare the data, fit the tokenizer, write config.json.

    Everything is built in a staging folder beside `out` and moved into place only
    when complete, so a failure (or --overwrite with a bad source) harms nothing.
    """
    if out.exists() and not out.is_dir():
        raise LstmgenError(f"--out {out} is a file; name a folder for the run")
    if out.exists() and any(out.iterdir()):
        if not (out / "config.json").is_file():
            raise LstmgenError(f"{out} exists and is not an lstmgen run; choose another --out")
        if not overwrite:
            raise LstmgenError(
                f"{out} already holds a run; continue it with: lstmgen train --resume {out}  "
                f"(or pass --overwrite to start over)"
            )
    model_config = ModelConfig(**{k: v for k, v in options.items() if k in MODEL_FIELDS})  # validate before work
    train_config = TrainConfig(**{k: v for k, v in options.items() if k in TRAIN_FIELDS})
    if train_config.lr_finder and "lr" in options:
        raise LstmgenError("give --lr or --lr-finder, not both (the finder picks the peak learning rate)")
    prepare_options = {k: v for k, v in options.items() if k in PREPARE_FIELDS}
    prepare_config = PrepareConfig(**prepare_options)
    specs = [sources] if isinstance(sources, (str, Path)) else list(sources)
    from_store = len(specs) == 1 and is_token_store(Path(specs[0]))
    if train_config.embeddings and not from_store and prepare_config.level != "word":
        raise LstmgenError(f"--embeddings needs --level word (word vectors cannot start a {prepare_config.level}-level model)")
    if train_config.embeddings and not Path(train_config.embeddings).is_file():
        raise LstmgenError(f"--embeddings {train_config.embeddings} does not exist; give a GloVe or word2vec vector file")
    if model_config.freeze_embeddings and not train_config.embeddings:
        raise LstmgenError("--freeze-embeddings needs --embeddings FILE (freezing random embeddings would only hurt)")
    staging = out.parent / f".{out.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        config, vectors = _prepare_run(
            sources, staging, model_config, train_config, prepare_config, given=set(prepare_options), quiet=quiet, shown_as=out,
            embedding_given="embedding" in options, hidden_given="hidden" in options,
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # nothing half-made is left behind
        raise
    if out.exists():
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)
    return config, vectors


def _prepare_run(sources, out: Path, model_config: ModelConfig, train_config: TrainConfig, prepare_config: PrepareConfig, *, given: set, quiet: bool, shown_as: Path, embedding_given: bool, hidden_given: bool) -> tuple[dict, np.ndarray | None]:
    specs = [sources] if isinstance(sources, (str, Path)) else list(sources)
    for spec in specs:
        refuse_incomplete_store(spec)
    if len(specs) == 1 and Path(specs[0]).is_dir() and is_token_store(specs[0]):
        if given:
            raise LstmgenError(
                f"{specs[0]} is an already prepared token store; {', '.join('--' + k.replace('_', '-') for k in sorted(given))} "
                f"apply when preparing (run lstmgen prepare again with them, or train on the raw sources)"
            )
        TokenStore.open(specs[0])  # refuse an incomplete store before copying anything
        _link_store(Path(specs[0]), out / "data")
    elif any(Path(s).is_dir() and is_token_store(s) for s in specs):
        raise LstmgenError("a prepared token store must be the only source of a run; prepare all the sources into one store")
    else:
        try:
            resolved = resolve_sources(specs, spool_dir=out / ".stdin", options=prepare_config)
            meta = write_store(resolved, out / "data", prepare_config, quiet=quiet)
        finally:
            shutil.rmtree(out / ".stdin", ignore_errors=True)
        if not quiet:
            print(summary(meta, shown_as / "data"), file=sys.stderr)
    store = TokenStore.open(out / "data")
    val_fraction = store.meta.get("val_fraction", prepare_config.val_fraction)
    tokenizer = load_tokenizer(out / "data" / "tokenizer.json")
    fit = max_batch_size(len(store.train), train_config.seq_len)
    if fit < 1:
        raise LstmgenError(
            f"the training text has {len(store.train)} {_unit(tokenizer)}, too few for one sequence of --seq-len "
            f"{train_config.seq_len}; give at least {train_config.seq_len + 2} characters (about "
            f"{(train_config.seq_len + 2) / (1 - val_fraction):.0f} in all) or lower --seq-len"
        )
    if fit < train_config.batch_size:
        warn(
            f"the training text ({len(store.train)} {_unit(tokenizer)}) is too small for --batch-size "
            f"{train_config.batch_size} at --seq-len {train_config.seq_len}; using --batch-size {fit}"
        )
        train_config.batch_size = fit
    model_config.vocab_size = tokenizer.vocab_size
    vectors, coverage = None, None
    if train_config.embeddings:
        vectors, coverage = _pretrained_embeddings(train_config.embeddings, tokenizer, store, model_config, embedding_given, quiet=quiet)
    sizing = None
    # Sized at the char level only: the rule was measured there, and a word vocabulary's
    # embedding and output matrices would count as parameters the recurrent size must pay for.
    if train_config.max_time and not hidden_given and not model_config.tie_weights and tokenizer.kind == "char":
        sizing = _size_model(model_config, train_config, len(store.train), quiet=quiet)
    tokenizer.save(out / "tokenizer.json")
    config = {
        "format": RUN_FORMAT,
        "lstmgen_version": __version__,
        "level": tokenizer.kind,
        "model": model_config.to_dict(),
        "train": train_config.to_dict(),
        "data": {k: store.meta.get(k) for k in ("sources", "characters", "documents", "train_tokens", "val_tokens", "val_characters", "val_fraction", "split", "encoding", "errors")},
    }
    if coverage is not None:
        config["embeddings"] = coverage
    if sizing is not None:
        config["sizing"] = sizing
    write_json(out / "config.json", config)
    return config, vectors


def _size_model(model_config: ModelConfig, train_config: TrainConfig, train_tokens: int, *, quiet: bool) -> dict:
    """--max-time without --hidden: time the hidden sizes here and take the one the budget suits (sizing.py)."""
    from .sizing import PARAMETERS_PER_TOKEN, TOKENS_PER_PARAMETER, size_for_budget

    started = time.perf_counter()
    budget = parse_duration(train_config.max_time)
    chosen = size_for_budget(
        model_config, budget_s=budget, train_tokens=train_tokens, batch_size=train_config.batch_size,
        seq_len=train_config.seq_len, device=resolve_device(train_config.device),
    )
    model_config.hidden = chosen.hidden
    why = {
        "time": f"a larger one could not read {TOKENS_PER_PARAMETER:g} tokens per parameter in the time",
        "data": f"a larger one would have more than {PARAMETERS_PER_TOKEN:g} parameters per training token",
        "ladder": "the largest size tried",
        "smallest": "the smallest size tried; even it is short of time or data",
    }[chosen.limited_by]
    if not quiet:
        print(
            f"model: {model_config.layers}×{chosen.hidden} ({chosen.parameters:,} parameters) for --max-time {train_config.max_time}: "
            f"{chosen.tokens_per_s:,.0f} tokens/s measured here, ~{chosen.budget_tokens / chosen.parameters:.1f} tokens per parameter in the budget; "
            f"{why} (--hidden sets the size; sizing took {time.perf_counter() - started:.1f} s)",
            file=sys.stderr,
        )
    return {"hidden": chosen.hidden, "parameters": chosen.parameters, "tokens_per_s": round(chosen.tokens_per_s),
            "budget_tokens": round(chosen.budget_tokens), "limited_by": chosen.limited_by}


def _pretrained_embeddings(path: str, tokenizer, store: TokenStore, model_config: ModelConfig, embedding_given: bool, *, quiet: bool):
    """The first embedding matrix from a word-vector file, and what share of the vocabulary it covers (printed)."""
    from .embeddings import read_vectors

    if tokenizer.kind != "word":
        raise LstmgenError(f"--embeddings needs --level word (word vectors cannot start a {tokenizer.kind}-level model)")
    vectors = read_vectors(path, tokenizer.words)
    if embedding_given and model_config.embedding != vectors.dimensions:
        raise LstmgenError(f"--embedding {model_config.embedding} differs from the {vectors.dimensions} dimensions of {path}; drop --embedding")
    model_config.embedding = vectors.dimensions
    if model_config.tie_weights and model_config.hidden != vectors.dimensions:
        raise LstmgenError(f"--tie-weights needs --hidden equal to the {vectors.dimensions} dimensions of {path}")
    counts = np.bincount(np.asarray(store.train), minlength=tokenizer.vocab_size)
    vocabulary_share, token_share = vectors.coverage(tokenizer.vocab_size, counts)
    if not quiet:
        print(
            f"embeddings: {len(vectors.found):,} of {tokenizer.vocab_size - 1:,} vocabulary words ({vocabulary_share:.1%}) "
            f"and {token_share:.1%} of the training tokens have a {vectors.dimensions}-dimensional vector in {path}",
            file=sys.stderr,
        )
    coverage = {"file": str(path), "dimensions": vectors.dimensions, "words_found": len(vectors.found),
                "vocabulary_coverage": round(vocabulary_share, 4), "token_coverage": round(token_share, 4)}
    return vectors.matrix(tokenizer.vocab_size), coverage


def tokens_per_char(config: dict) -> float:
    """Tokens per character of the held-out text (1 at the char level): converts nats/token to bits/char."""
    data = config.get("data", {})
    if not data.get("val_characters") or not data.get("val_tokens"):
        return 1.0
    return data["val_tokens"] / data["val_characters"]


def train(
    sources: str | Path | Sequence[str | Path] | None = None,
    *,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    **options,
) -> TrainResult:
    """Train a model on sources (files, folders, tables, '-', 'python-docs', or one prepared store) into `out`.

    `options` are ModelConfig, TrainConfig and PrepareConfig fields (hidden=512, max_time="10m", column="Text", ...).
    With resume=True, continue the run in `out` exactly where it stopped; only how long
    it goes on (epochs, max_time, max_steps, patience, ...) and the device may change.
    """
    out = Path(out)
    unknown = set(options) - MODEL_FIELDS - TRAIN_FIELDS - PREPARE_FIELDS
    if unknown:
        raise LstmgenError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    if resume:
        if sources:
            raise LstmgenError("--resume continues a run on its own data; do not name sources with it")
        config = read_config(out, writer=True)
        if {"epochs", "max_time", "max_steps"} & set(options):
            # A limit the run already reached, and that is not restated, is dropped:
            # `--resume --epochs 4` continues a run that stopped at its --max-time.
            weights = out / "model.safetensors"
            progress = read_progress(weights) if weights.exists() else {}
            reached = {
                "epochs": progress.get("epoch", 0) >= (config["train"].get("epochs") or float("inf")),
                "max_steps": progress.get("step", 0) >= (config["train"].get("max_steps") or float("inf")),
                "max_time": progress.get("elapsed_s", 0.0) >= (parse_duration(config["train"].get("max_time")) or float("inf")),
            }
            config["train"].update({k: None for k, done in reached.items() if done and k not in options})
        fixed = {k for k in options if k not in RESUMABLE_FIELDS and options[k] != {**config["model"], **config["train"]}.get(k)}
        if fixed:
            raise LstmgenError(
                f"cannot change {', '.join('--' + k.replace('_', '-') for k in sorted(fixed))} when resuming; "
                f"start a new run with --out instead"
            )
        lr_changed = "lr" in options and options["lr"] != config["train"].get("lr")
        config["train"].update(options)
    else:
        lr_changed = False
        if sources is None or (not isinstance(sources, (str, Path)) and not list(sources)):
            raise LstmgenError("no input given; name text files, folders, '-' for stdin, or python-docs")
        config, vectors = _make_run(sources, out, options, overwrite=overwrite, quiet=quiet)
        return _run_training(out, config, resume=resume, quiet=quiet, embeddings=vectors)
    return _run_training(out, config, resume=resume, quiet=quiet, lr_changed=lr_changed)


def _find_lr(model, store: TokenStore, train_config: TrainConfig, config: dict, out: Path, reporter) -> float:
    """Run the learning-rate range test on the fresh model; record and return the suggested peak rate."""
    from .lrfind import range_test

    started = time.perf_counter()
    test = range_test(
        model, store.train, batch_size=train_config.batch_size, seq_len=train_config.seq_len,
        weight_decay=train_config.weight_decay, grad_clip=train_config.grad_clip, seed=train_config.seed,
    )
    seconds = time.perf_counter() - started
    lowest = min(test.losses)
    reporter.print(f"lr finder: {len(test.rates)} steps at rates from {test.rates[0]:.0e} to {test.rates[-1]:.2g} in {seconds:.1f} s"
                   + (" (stopped when the loss blew up)" if test.stopped_early else ""))
    for rate, loss in test.table():
        reporter.print(f"  lr {rate:<9.2g} smoothed loss {loss:.3f}" + ("  <- lowest" if loss == lowest else ""))
    reporter.print(f"lr finder: using --lr {test.suggestion:.3g} (a tenth of the rate at the lowest loss)")
    config["train"]["lr"] = test.suggestion
    config["lr_finder"] = {"rates": test.rates, "losses": test.losses, "suggestion": test.suggestion, "seconds": round(seconds, 2)}
    write_json(out / "config.json", config)
    return test.suggestion


def _link_store(store: Path, target: Path) -> None:
    """Put a prepared store's files in the run (hard links where possible: no second copy of a big corpus)."""
    target.mkdir(parents=True)
    for name in ("train.bin", "val.bin", "tokenizer.json", "meta.json"):
        try:
            os.link(store / name, target / name)
        except OSError:
            shutil.copyfile(store / name, target / name)


def _run_training(out: Path, config: dict, *, resume: bool, quiet: bool, lr_changed: bool = False, embeddings: np.ndarray | None = None) -> TrainResult:
    train_config = TrainConfig.from_dict(config["train"])
    device = resolve_device(train_config.device)
    torch.manual_seed(train_config.seed)
    tokenizer = load_tokenizer(out / "tokenizer.json")
    model = build_model(config, tokenizer)
    if embeddings is not None:
        model.set_embeddings(torch.from_numpy(embeddings))
    model = model.to(device)
    store = TokenStore.open(out / "data")
    ratio = tokens_per_char(config)
    sampler_model = Model(model, tokenizer)

    def sampler(**settings) -> str:
        was_training = model.training
        text = sampler_model.generate("", **settings)
        model.train(was_training)
        return text  # type: ignore[return-value]

    reporter = RunReporter(out, sampler=sampler, quiet=quiet, tokens_per_char=ratio)
    if train_config.lr_finder and "lr_finder" not in config:  # also a resumed run stopped during the test
        train_config.lr = _find_lr(model, store, train_config, config, out, reporter)
    trainer = Trainer(
        model, store.train, store.val, train_config, hooks=reporter, save=lambda t, best=False: _save(out, config, tokenizer, t, best), device=device
    )
    if resume and not (out / "model.safetensors").exists():
        truncate_metrics(out / "metrics.jsonl", 0)
        reporter.print(f"{out} has no checkpoint yet; training starts from the beginning")
    if resume and (out / "model.safetensors").exists():
        progress = Progress(**read_progress(out / "model.safetensors"))
        if lr_changed:  # a new peak rate given on resume replaces the one that roll-backs had lowered
            progress.lr_scale, progress.rollbacks = 1.0, 0
        load_weights(model, out / "model.safetensors")
        trainer.load_trainer_state(load_trainer_state(out / "trainer_state.pt"), progress)
        truncate_metrics(out / "metrics.jsonl", progress.step)
        reporter.print(f"resuming {out} at step {progress.step:,} (epoch {progress.epoch + 1}, {progress.tokens:,} tokens seen)")
    elif not quiet:
        reporter.print(
            f"training {model.num_parameters():,} parameters on {len(store.train):,} {_unit(tokenizer)} "
            f"({len(store.val):,} held out), device {device}"
        )
    reason = trainer.fit()
    p = trainer.progress
    result = TrainResult(
        run_dir=out,
        stopped_because=reason,
        steps=p.step,
        epochs=p.epoch + p.batch / max(trainer.steps_per_epoch, 1),
        tokens=p.tokens,
        elapsed_s=p.elapsed_s,
        best_val_bits_per_char=None if p.best_val_nats is None else bits_per_char(p.best_val_nats, ratio),
        last_val_bits_per_char=None if p.last_val_nats is None else bits_per_char(p.last_val_nats, ratio),
    )
    if reason.startswith("interrupted"):
        raise TrainingInterrupted(result)
    best = f"best held-out {result.best_val_bits_per_char:.4f} bits/char" if result.best_val_bits_per_char else "not evaluated"
    reporter.print(f"stopped ({reason}) after {p.step:,} steps; {best}. Generate with: lstmgen generate {out}")
    return result


def _unit(tokenizer) -> str:
    return "characters" if tokenizer.kind == "char" else f"{tokenizer.kind} tokens"


class TrainingInterrupted(Exception):
    """Training stopped on Ctrl-C or SIGTERM after saving a checkpoint."""

    def __init__(self, result: TrainResult):
        super().__init__(f"training interrupted; saved at step {result.steps}. Resume with: lstmgen train --resume {result.run_dir}")
        self.result = result


def _save(out: Path, config: dict, tokenizer, trainer: Trainer, best: bool) -> None:
    progress = dict(vars(trainer.progress))
    if best:
        write_checkpoint(
            out / "best",
            {
                "model.safetensors": lambda path: save_weights(trainer.model, path, progress),
                "config.json": lambda path: write_json(path, config),
                "tokenizer.json": lambda path: tokenizer.save(path),
            },
        )
        return
    write_checkpoint(
        out,
        {
            "model.safetensors": lambda path: save_weights(trainer.model, path, progress),
            "trainer_state.pt": lambda path: save_trainer_state(trainer.trainer_state(), path),
            "config.json": lambda path: write_json(path, config),
        },
    )


def info(run_dir: str | Path) -> dict:
    """What a run is: config, parameter count, progress, best held-out bits/char."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    tokenizer = load_tokenizer(run_dir / "tokenizer.json")
    module = build_model(config, tokenizer)
    weights = run_dir / "model.safetensors"
    progress = read_progress(weights) if weights.exists() else {}
    best = progress.get("best_val_nats")
    return {
        "run": str(run_dir),
        "level": config.get("level", "char"),
        "vocab_size": tokenizer.vocab_size,
        "parameters": module.num_parameters(),
        "model": config["model"],
        "train": config["train"],
        "data": config.get("data", {}),
        "steps": progress.get("step", 0),
        "epochs": progress.get("epoch", 0),
        "tokens_seen": progress.get("tokens", 0),
        "elapsed_s": round(progress.get("elapsed_s", 0.0), 1),
        "rollbacks": progress.get("rollbacks", 0),  # times the loss diverged and training went back
        "lr_scale": progress.get("lr_scale", 1.0),
        "best_val_bits_per_char": None if best is None else bits_per_char(best, tokens_per_char(config)),
        "best_val_nats_per_token": best,
        "best_step": progress.get("best_step"),
        "has_best": (run_dir / "best" / "model.safetensors").exists(),
    }
