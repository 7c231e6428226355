"""Preparation: sources -> cleaned documents -> vocabulary -> token store, at every level.

Streaming passes over the sources, so memory stays flat whatever the corpus size: the first
(scan.py) counts characters and notes which documents are dropped, word and BPE add one
that fits the tokenizer on the training text, and the last encodes straight into train.bin /
val.bin (splits.py; levels.py has what differs by level). The held-out split is made of
whole documents when there are enough of them, else it is the tail of the text.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from lstmgen.config import DataConfig
from lstmgen.data.levels import (
    TrainingIds,
    encoder_for,
    extended,
    fit_tokenizer,
    kept_documents,
    refit_chars,
)
from lstmgen.data.reading import Source
from lstmgen.data.scan import Progress, Scan
from lstmgen.data.scan import scan as scan_sources
from lstmgen.data.sources import as_specs, resolve_sources
from lstmgen.data.splits import SplitPlan, remap_splits, write_splits
from lstmgen.data.store import (
    STORE_FORMAT,
    STORE_NAMES,
    is_token_store,
    refuse_incomplete_store,
    smallest_dtype,
    write_documents,
)
from lstmgen.errors import LstmgenError, say
from lstmgen.files import check_replaceable, staged
from lstmgen.tokens import CharTokenizer, ConditionedTokenizer, Conditions
from lstmgen.tokens.conditions import DOCUMENT_MARK, Column, conditions_of

MANY_DOCUMENTS = 20  # --split auto holds out whole documents from this many (see --help)


def _choose_split(config: DataConfig, scan: Scan) -> str:
    """Whole documents when the held-out share holds four of the largest one, or when there
    are MANY_DOCUMENTS or more and none is larger than the share: the held-out documents are
    then spread over all of them (the tail of 80 source files read in order was one package).
    Else the tail.

    With conditions, always whole documents: each held-out document keeps its control token.
    """
    share = config.val_fraction * scan.characters
    whole = scan.documents >= 2 and (
        scan.largest * 4 <= share or scan.documents >= MANY_DOCUMENTS and scan.largest <= share
    )
    if config.conditions and scan.documents < 2:
        raise LstmgenError("conditions need at least 2 documents (table rows) to hold one out")
    if config.conditions:
        return "documents"
    if config.split == "documents" and scan.documents < 2:
        raise LstmgenError(
            "--split documents needs at least 2 documents; use --split tail for a single text"
        )
    if config.split == "auto":
        return "documents" if whole else "tail"
    return config.split


def _conditions(config: DataConfig, scan: Scan, base: Conditions | None) -> Conditions | None:
    """The conditions of a store read with --condition-column (field), its document marks
    counted; a fine-tune of a conditioned base keeps the base's values (their embeddings)."""
    names = config.conditions
    if base is not None and tuple(names) != base.names:
        raise LstmgenError(
            f"the base run was trained with the condition column(s) {', '.join(base.names)}; "
            f"fine-tune it on a table with --condition-column "
            f"{' --condition-column '.join(base.names)} (or --condition-field)"
        )
    if not names:
        return None
    conditions = base or Conditions(
        tuple(
            Column.from_counts(name, counts, min_count=config.min_condition_count)
            for name, counts in zip(names, scan.conditions, strict=True)
        ),
        separator=config.doc_separator,
    )
    scan.counter.update(DOCUMENT_MARK, times=scan.documents)
    return conditions


def write_store(
    sources: Sequence[Source],
    out: Path,
    config: DataConfig,
    *,
    quiet: bool = False,
    base_tokenizer=None,
) -> dict:
    """Prepare sources into a new token store in the folder out (created; must not exist).

    With base_tokenizer (fine-tuning), the vocabulary is the base's, extended with the new
    text's characters or words; at the BPE level it is the base's. Returns its meta.
    """
    base = getattr(base_tokenizer, "inner", base_tokenizer)  # control tokens are added anew
    started = time.perf_counter()
    progress = Progress(sources, quiet=quiet)
    with progress:
        scan = scan_sources(sources, config, progress)
        split = _choose_split(config, scan)
        conditions = _conditions(config, scan, conditions_of(base_tokenizer))
        marks = [DOCUMENT_MARK] if conditions else []
        labels: list[tuple[int, ...]] = []  # each kept document's condition numbers, in order
        # A control token is one more character before each document.
        characters = scan.characters + (scan.documents if conditions else 0)
        plan = SplitPlan.for_corpus(
            split, config.val_fraction, config.doc_separator, characters, scan.documents
        )
        documents = partial(
            kept_documents, sources, config, scan.dropped, progress, conditions=conditions
        )
        train_ids = None
        if config.level == "char":  # every character seen; refitted on train.bin once written
            tokenizer = CharTokenizer.fit(scan.counter)
            exact = config.min_count > 1 or config.max_vocab is not None
            train_ids = TrainingIds(tokenizer.vocab_size, exact=exact)
        elif base is not None and base.kind == "bpe":
            tokenizer = base
        else:  # word and bpe: a pass over the training text to fit the tokenizer
            fitting = documents("fitting", as_bytes=False)
            tokenizer = fit_tokenizer(fitting, plan, config, marks=marks)
            tokenizer = extended(base, tokenizer) if base is not None else tokenizer
        encoder = encoder_for(tokenizer, smallest_dtype(tokenizer.vocab_size))
        out.mkdir(parents=True, exist_ok=True)
        try:
            encoding = documents("encoding", as_bytes=encoder.takes_bytes, labels=labels)
            encoded = write_splits(encoding, plan, encoder, out, train_ids=train_ids)
            if train_ids is not None:
                tokenizer, unknown = refit_chars(tokenizer, train_ids, config, out, marks=marks)
                if unknown is not None:  # an unknown token is one unknown character
                    encoded["unknown_tokens"] = encoded["unknown_characters"] = sum(
                        unknown.values()
                    )
                if base is not None:  # the base's ids first, then the new characters
                    fitted, tokenizer = tokenizer, extended(base, tokenizer)
                    table = fitted.ids_in(tokenizer, smallest_dtype(tokenizer.vocab_size))
                    remap_splits(out, table, smallest_dtype(fitted.vocab_size))
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)  # nothing half-written is left
            raise
    sides = np.frombuffer(encoded.pop("document_sides"), dtype=np.uint8)
    if conditions:  # document marks are no characters: bits/char is over the text alone
        for side in ("train", "val"):
            encoded[f"{side}_characters"] -= encoded[f"{side}_documents"]
        tokenizer = ConditionedTokenizer(tokenizer, conditions)
        write_documents(
            out,
            smallest_dtype(tokenizer.vocab_size),
            tokenizer.document_id,
            np.array(labels, np.int64).reshape(len(labels), len(conditions.columns)),
            sides,
        )
    meta = {
        "format": STORE_FORMAT,
        "level": tokenizer.kind,
        "dtype": smallest_dtype(tokenizer.vocab_size).name,
        "vocab_size": tokenizer.vocab_size,
        "train_tokens": encoded["train_tokens"],
        "val_tokens": encoded["val_tokens"],
        "characters": encoded["train_characters"] + encoded["val_characters"],
        "val_characters": encoded["val_characters"],  # bits/char = bits over these
        "documents": scan.documents,
        "val_fraction": config.val_fraction,
        "split": split,
        "train_documents": encoded["train_documents"],
        "val_documents": encoded["val_documents"],
        "encoding": config.encoding,
        "errors": config.errors,
        "sources": [s.name for s in sources],
        "counts": {
            "documents": scan.documents,
            "characters_in_documents": scan.characters,
            "dropped_short_or_empty": scan.short,
            "duplicates": scan.duplicates,
            "malformed_rows": scan.malformed_rows,
            "unknown_characters": encoded["unknown_characters"],
            "unknown_tokens": encoded["unknown_tokens"],
        },
        "vocabulary": {
            "chars_seen": len(scan.counter.counts),
            "chars_kept": tokenizer.vocab_size - 1,  # tokens kept, at the word and bpe levels
            "min_count": config.min_count,
            "max_vocab": config.max_vocab,
        },
        "reading": config.reading(),
        "cleaning": config.cleaning(),
        "doc_separator": config.doc_separator,
        "seconds": round(time.perf_counter() - started, 3),
        "input_bytes": progress.total_bytes,
    }
    if conditions:
        meta["conditions"] = conditions.to_json()
        # One control token per document: tokens that are no text (see bits/char).
        meta["control_tokens"] = {
            "train": encoded["train_documents"],
            "val": encoded["val_documents"],
        }
    tokenizer.save(out / "tokenizer.json")
    # meta.json last: it marks the store whole.
    meta_text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    (out / "meta.json").write_text(meta_text, encoding="utf-8")
    return meta


def prepare(
    sources,
    *,
    out: str | Path,
    overwrite: bool = False,
    quiet: bool = False,
    config: DataConfig | None = None,
    **options,
) -> dict:
    """Prepare sources (files, folders, globs, tables, '-', 'python-docs') into a store at `out`.

    Settings are a DataConfig, or its fields as keywords (column="Text", strip_html=True,
    val_fraction=0.05, ...). The store appears whole or not at all. Returns its meta.json.
    """
    unknown = set(options) - DataConfig.option_names()
    if unknown:
        raise LstmgenError(f"unknown preparation option(s): {', '.join(sorted(unknown))}")
    config = config or DataConfig(**options)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LstmgenError(f"--out {out} is a file; name a folder for the token store")
    if out.is_dir() and not out.is_symlink() and any(out.iterdir()):
        if not is_token_store(out):
            raise LstmgenError(f"{out} exists and is not a token store; choose another --out")
        if not overwrite:
            raise LstmgenError(f"{out} already holds a token store; pass --overwrite to replace it")
    specs = as_specs(sources)
    check_replaceable(out, kind="token store", marker="meta.json", names=STORE_NAMES, sources=specs)
    for spec in specs:
        refuse_incomplete_store(spec)
        if Path(spec).is_dir() and is_token_store(spec):
            raise LstmgenError(
                f"{spec} is already a prepared token store; "
                f"train on it directly: lstmgen train {spec} --out RUN"
            )
    with staged(out, "partial") as store:
        meta = write_resolved(specs, store, config, quiet=quiet)
    if not quiet:
        say(summary(meta, out))
    return meta


def write_resolved(
    specs: Sequence[str], out: Path, config: DataConfig, *, quiet: bool, base_tokenizer=None
) -> dict:
    """Resolve the named sources (stdin spooled in out) and prepare them into the empty out."""
    spool = out / ".stdin"
    try:
        sources = resolve_sources(specs, spool_dir=spool, options=config)
        return write_store(sources, out, config, quiet=quiet, base_tokenizer=base_tokenizer)
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def summary(meta: dict, out: Path) -> str:
    """One line saying what a store holds and how fast it was made."""
    c = meta["counts"]
    dropped = [
        f"{n:,} {what}"
        for n, what in (
            (c["dropped_short_or_empty"], "empty/short"),
            (c["duplicates"], "duplicate"),
            (c["malformed_rows"], "malformed"),
        )
        if n
    ]
    dropped_text = f" (dropped {', '.join(dropped)})" if dropped else ""
    documents = f"{meta['documents']:,} document{'s' if meta['documents'] != 1 else ''}"
    if meta["split"] == "documents":
        held_out = f"{meta['val_documents']:,} whole documents spread over the {documents}"
    else:
        held_out = f"the tail, the last {meta['val_fraction']:.0%} of the text"
    seconds = meta["seconds"]
    unit = "characters" if meta.get("level", "char") == "char" else f"{meta['level']} tokens"
    speed = meta.get("input_bytes") and seconds > 0
    rate = f", {meta['input_bytes'] / seconds / 1e6:.0f} MB/s" if speed else ""
    return (
        f"prepared {documents}{dropped_text}: "
        f"{meta['train_tokens']:,} training / {meta['val_tokens']:,} held-out {unit} "
        f"(held out: {held_out}), "
        f"vocabulary {meta['vocab_size']} -> {out} in {seconds:.1f} s{rate}"
    )
