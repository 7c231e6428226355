"""Creating a run directory: prepare (or link) its token store, fit the config to the data
(vocabulary, batch size, word vectors, the model size a --max-time budget suits), write it.

Everything is built in a staging folder beside `out` and moved into place only when
complete, so a failure (or --overwrite with a bad source) harms nothing.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lstmgen.config import RunConfig
from lstmgen.data.prepare import summary, write_resolved
from lstmgen.data.sources import as_specs
from lstmgen.data.store import TokenStore, is_token_store, refuse_incomplete_store, store_files
from lstmgen.device import resolve_device
from lstmgen.errors import LstmgenError, say, warn
from lstmgen.files import check_replaceable, staged
from lstmgen.run.finetune import fine_tune_config, initial_weights, open_base
from lstmgen.tokens import load_tokenizer
from lstmgen.tokens.conditions import conditions_of
from lstmgen.tokens.vectors import read_vectors
from lstmgen.training.batches import max_batch_size
from lstmgen.training.distributed import world_size
from lstmgen.training.sizing import (
    PARAMETERS_PER_TOKEN,
    SHORT_RUN_EPOCHS,
    SHORT_RUN_LR,
    SIZING_SHARE,
    TOKENS_PER_PARAMETER,
    budget_settings,
    size_for_budget,
)

# What a run directory holds (the only names --overwrite replaces; a file of the user's stops it).
RUN_FILES = (
    "config.json",
    "tokenizer.json",
    "data",
    "model.safetensors",
    "best",
    "trainer_state.pt",
    "metrics.jsonl",
    "int8.json",
    "metrics.tmp",
    "samples.md",
    "curves.png",
    "curves.png.tmp",
    "tensorboard",
)

CORPUS_KEYS = (
    "sources",
    "characters",
    "documents",
    "train_tokens",
    "val_tokens",
    "val_characters",
    "val_fraction",
    "split",
    "encoding",
    "errors",
)
CONDITION_KEYS = ("conditions", "control_tokens")  # in config.json only with conditions


@dataclass
class Prepared:
    """What create() made and training needs: read once, not saved and read back."""

    tokenizer: object
    store: TokenStore
    vectors: np.ndarray | None = None  # pretrained word vectors for the embedding, (V, E)
    initial: dict | None = None  # the weights to start from (a fine-tune's base's, extended)


def create(
    sources, out: Path, config: RunConfig, *, overwrite: bool, quiet: bool
) -> tuple[RunConfig, Prepared]:
    """Create a new run directory: prepare the data, fit the tokenizer, write config.json."""
    if out.exists() and not out.is_dir():
        raise LstmgenError(f"--out {out} is a file; name a folder for the run")
    if out.is_dir() and not out.is_symlink() and any(out.iterdir()):
        if not (out / "config.json").is_file():
            raise LstmgenError(f"{out} exists and is not an lstmgen run; choose another --out")
        if not overwrite:
            raise LstmgenError(
                f"{out} already holds a run; continue it with: lstmgen train "
                f"--resume {out}  (or pass --overwrite to start over)"
            )
    specs = as_specs(sources)
    reads = [*specs, config.train.init_from, config.train.embeddings]
    check_replaceable(
        out, kind="run", marker="config.json", names=RUN_FILES, sources=[s for s in reads if s]
    )
    from_store = len(specs) == 1 and is_token_store(Path(specs[0]))
    embeddings = config.train.embeddings
    if embeddings and not from_store and config.data.level != "word":
        raise LstmgenError(
            f"--embeddings needs --level word (word vectors cannot start a "
            f"{config.data.level}-level model)"
        )
    if embeddings and not Path(embeddings).is_file():
        raise LstmgenError(
            f"--embeddings {embeddings} does not exist; give a GloVe or word2vec vector file"
        )
    resolve_device(config.train.device)  # a device that is not there fails before any work
    base = None
    if config.train.init_from:
        if from_store:
            raise LstmgenError(
                "--init-from prepares the text with the base's vocabulary; train on the raw "
                "sources, not on a prepared token store"
            )
        base = open_base(config.train.init_from)
        config = fine_tune_config(config, base)
    with staged(out, "staging") as staging:
        prepared = Prepared(
            tokenizer=None,
            store=_prepare_data(
                specs,
                staging / "data",
                config,
                quiet=quiet,
                shown_as=out / "data",
                base_tokenizer=base.tokenizer if base else None,
            ),
        )
        prepared.tokenizer = tokenizer = load_tokenizer(staging / "data" / "tokenizer.json")
        config, prepared = _fit_to_data(config, prepared, quiet=quiet)
        if base is not None:
            prepared.initial = initial_weights(base, config.model)
            record = base.record(tokenizer.vocab_size)
            config = replace(config, records={**config.records, "base": record})
            if not quiet:
                say(
                    f"fine-tuning {base.run} ({base.checkpoint} checkpoint, step {base.step:,}): "
                    f"{record['added_tokens']} new tokens added to its {record['vocab_size']}; "
                    f"lr {config.train.lr:g}, warm-up {config.train.warmup_steps} steps"
                )
        tokenizer.save(staging / "tokenizer.json")
        config.save(staging / "config.json")
        prepared.store = None  # its memory maps are closed before the folder moves
    prepared.store = TokenStore.open(out / "data")
    return config, prepared


def _prepare_data(
    specs: list,
    folder: Path,
    config: RunConfig,
    *,
    quiet: bool,
    shown_as: Path,
    base_tokenizer=None,
) -> TokenStore:
    """The run's token store: a prepared store linked in, or the sources prepared into it."""
    for spec in specs:
        refuse_incomplete_store(spec)
    if len(specs) == 1 and Path(specs[0]).is_dir() and is_token_store(specs[0]):
        given = config.given_in("data")
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in sorted(given))
            raise LstmgenError(
                f"{specs[0]} is an already prepared token store; {flags} apply when "
                "preparing (run lstmgen prepare again with them, or train on the "
                "raw sources)"
            )
        TokenStore.open(specs[0])  # refuse an incomplete store before copying anything
        _link_store(Path(specs[0]), folder)
    elif any(Path(s).is_dir() and is_token_store(s) for s in specs):
        raise LstmgenError(
            "a prepared token store must be the only source of a run; "
            "prepare all the sources into one store"
        )
    else:
        meta = write_resolved(
            specs, folder, config.data, quiet=quiet, base_tokenizer=base_tokenizer
        )
        if not quiet:
            say(summary(meta, shown_as))
    return TokenStore.open(folder)


def _link_store(store: Path, target: Path) -> None:
    """Put a prepared store's files in the run (hard links where possible: no second copy)."""
    target.mkdir(parents=True)
    for name in store_files(store):
        try:
            os.link(store / name, target / name)
        except OSError:
            shutil.copyfile(store / name, target / name)


def _fit_to_data(
    config: RunConfig, prepared: Prepared, *, quiet: bool
) -> tuple[RunConfig, Prepared]:
    """The config completed from the data: vocabulary, batch size, word vectors, model size."""
    store, tokenizer, train = prepared.store, prepared.tokenizer, config.train
    unit = unit_of(tokenizer)
    processes = world_size()  # under torchrun each process reads --batch-size streams
    fit = max_batch_size(len(store.train), train.seq_len) // processes
    if fit < 1:
        val_fraction = store.meta.get("val_fraction", config.data.val_fraction)
        raise LstmgenError(
            f"the training text has {len(store.train)} {unit}, too few for one sequence of "
            f"--seq-len {train.seq_len}; give at least {train.seq_len + 2} characters (about "
            f"{(train.seq_len + 2) / (1 - val_fraction):.0f} in all) or lower --seq-len"
            + (f" (or use fewer than {processes} processes)" if processes > 1 else "")
        )
    if fit < train.batch_size:
        warn(
            f"the training text ({len(store.train)} {unit}) is too small for --batch-size "
            f"{train.batch_size} at --seq-len {train.seq_len}"
            + (f" on {processes} processes" if processes > 1 else "")
            + f"; using --batch-size {fit}"
        )
        train = replace(train, batch_size=fit)
    conditions = conditions_of(tokenizer)
    model = replace(
        config.model,
        vocab_size=tokenizer.vocab_size,
        conditions=conditions.sizes if conditions else (),
    )
    corpus = {k: store.meta.get(k) for k in CORPUS_KEYS}
    corpus.update({k: store.meta[k] for k in CONDITION_KEYS if k in store.meta})
    config = replace(config, model=model, train=train, level=tokenizer.kind, corpus=corpus)
    if train.embeddings:
        config, prepared.vectors = _pretrained_embeddings(config, prepared, quiet=quiet)
    # Sized at the char level only: the rule was measured there, and a word vocabulary's
    # embedding and output matrices would count as parameters the recurrent size must pay for.
    if train.max_time and "hidden" not in config.given and not train.init_from:
        if tokenizer.kind == "char" and not config.model.tie_weights:
            config = _size_model(config, len(store.train), quiet=quiet)
        elif not quiet:
            why = (
                "--tie-weights ties it to --embedding"
                if config.model.tie_weights
                else f"--max-time sizing is measured at the char level only, not {tokenizer.kind}"
            )
            say(
                f"model: {config.model.layers}×{config.model.hidden}, the default size: {why} "
                "(--hidden sets the size)"
            )
    return config, prepared


def _size_model(config: RunConfig, train_tokens: int, *, quiet: bool) -> RunConfig:
    """--max-time without --hidden: time the hidden sizes here and take the one the budget suits."""
    started, train = time.perf_counter(), config.train
    chosen = size_for_budget(
        config.model,
        budget_s=train.max_time_s,
        train_tokens=train_tokens,
        batch_size=train.batch_size,
        seq_len=train.seq_len,
        device=resolve_device(train.device),
        processes=world_size(),
    )
    why = {
        "time": f"a larger one could not read {TOKENS_PER_PARAMETER:g} tokens per parameter "
        "in the time",
        "data": f"a larger one would have more than {PARAMETERS_PER_TOKEN:g} parameters per "
        "training token",
        "ladder": "the largest size tried",
        "sizing time": f"timing larger ones would take more than {SIZING_SHARE:.0%} of the budget",
        "smallest": "the smallest size tried; even it is short of time or data",
    }[chosen.limited_by]
    if not quiet:
        say(
            f"model: {config.model.layers}×{chosen.hidden} ({chosen.parameters:,} parameters) for "
            f"--max-time {train.max_time}: {chosen.tokens_per_s:,.0f} tokens/s measured here, "
            f"~{chosen.budget_tokens / chosen.parameters:.1f} tokens per parameter in the budget; "
            f"{why} (--hidden sets the size; sizing took {time.perf_counter() - started:.1f} s)"
        )
    record = {
        "hidden": chosen.hidden,
        "parameters": chosen.parameters,
        "tokens_per_s": round(chosen.tokens_per_s),
        "budget_tokens": round(chosen.budget_tokens),
        "limited_by": chosen.limited_by,
    }
    model, train = replace(config.model, hidden=chosen.hidden), config.train
    epochs = chosen.budget_tokens / max(train_tokens, 1)
    rule = budget_settings(epochs, config.given, lr_finder=train.lr_finder)
    if rule:
        record["budget_rule"] = {**rule, "epochs": round(epochs, 2)}
        model = replace(model, dropout=rule.get("dropout", model.dropout))
        train = replace(train, lr=rule.get("lr", train.lr))
        if not quiet:
            chosen_text = " ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in rule.items())
            lr_text = (
                f"; below {SHORT_RUN_EPOCHS:g} epochs a peak rate of {SHORT_RUN_LR:g}"
                if "lr" in rule
                else ""
            )
            say(
                f"{chosen_text} for a budget of ~{epochs:.1f} epochs: dropout follows the "
                "epochs a budget reads (0.03 up to 3, 0.1 at 5, 0.2 at 10, 0.3 at 20, "
                "0.4 from ~41)"
                f"{lr_text}; set --dropout or --lr to choose yourself"
            )
    return replace(config, model=model, train=train, records={**config.records, "sizing": record})


def _pretrained_embeddings(
    config: RunConfig, prepared: Prepared, *, quiet: bool
) -> tuple[RunConfig, np.ndarray]:
    """The first embeddings from a word-vector file, and the share of the vocabulary it covers."""
    tokenizer, path, model = prepared.tokenizer, config.train.embeddings, config.model
    if tokenizer.kind != "word":
        raise LstmgenError(
            f"--embeddings needs --level word (word vectors cannot start a "
            f"{tokenizer.kind}-level model)"
        )
    vectors = read_vectors(path, tokenizer.words)
    if "embedding" in config.given and model.embedding != vectors.dimensions:
        raise LstmgenError(
            f"--embedding {model.embedding} differs from the {vectors.dimensions} "
            f"dimensions of {path}; drop --embedding"
        )
    if model.tie_weights and model.hidden != vectors.dimensions:
        raise LstmgenError(
            f"--tie-weights needs --hidden equal to the {vectors.dimensions} dimensions of {path}"
        )
    counts = np.bincount(np.asarray(prepared.store.train), minlength=tokenizer.vocab_size)
    vocabulary_share, token_share = vectors.coverage(tokenizer.vocab_size, counts)
    if not quiet:
        say(
            f"embeddings: {len(vectors.found):,} of {tokenizer.vocab_size - 1:,} vocabulary words "
            f"({vocabulary_share:.1%}) and {token_share:.1%} of the training tokens have a "
            f"{vectors.dimensions}-dimensional vector in {path}"
        )
    coverage = {
        "file": str(path),
        "dimensions": vectors.dimensions,
        "words_found": len(vectors.found),
        "vocabulary_coverage": round(vocabulary_share, 4),
        "token_coverage": round(token_share, 4),
    }
    config = replace(
        config,
        model=replace(model, embedding=vectors.dimensions),
        records={**config.records, "embeddings": coverage},
    )
    return config, vectors.matrix(tokenizer.vocab_size)


def unit_of(tokenizer) -> str:
    """What a token of this tokenizer is called in messages."""
    return "characters" if tokenizer.kind == "char" else f"{tokenizer.kind} tokens"
