"""Preparation: sources -> cleaned documents -> character vocabulary -> token store.

Two streaming passes over the sources, so memory stays flat whatever the corpus size:
the first counts characters and notes which documents are dropped (too short, duplicate;
1 bit per document), the second encodes straight into train.bin / val.bin. The one
exception is --dedupe: knowing what was seen takes 12-24 bytes per distinct document.
The held-out split is made of whole documents when there are enough of them, else it is
the tail of the text.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from .clean import Cleaner, CleanOptions
from .docsets import DocumentBits, Hasher, HashSet, text_hash
from .errors import LstmgenError
from .sources import ReadOptions, Source, Tally, document_stream, resolve_sources
from .store import STORE_FORMAT, is_token_store, refuse_incomplete_store, smallest_dtype
from .tokenizers import LEVELS, CharCounter, CharTokenizer

SPLITS = ("auto", "documents", "tail")
BATCH_CHARS = 1 << 20  # small documents are counted and encoded in batches of about this size
FLUSH_BYTES = 4 << 20


@dataclass
class PrepareConfig(CleanOptions, ReadOptions):
    """Everything that decides a token store: how sources are read and cleaned, the vocabulary, the split."""

    doc_separator: str = "\n\n"  # written between documents, so the model learns where one ends
    val_fraction: float = 0.1  # share of the characters held out for validation
    split: str = "auto"  # documents (whole documents held out), tail (the end of the text), or auto
    max_vocab: int | None = None  # keep the most frequent characters/words only (None: all characters, 20,000 words)
    min_count: int = 1  # characters (words) seen fewer times become the unknown id
    level: str = "char"  # char, word or bpe: what one token is
    vocab_size: int = 4096  # pieces of the bpe level (bytes and merges)

    def __post_init__(self) -> None:
        ReadOptions.__post_init__(self)
        CleanOptions.__post_init__(self)
        self.doc_separator = self.doc_separator.replace("\\n", "\n").replace("\\t", "\t")
        if not 0 < self.val_fraction < 1:
            raise LstmgenError(f"--val-fraction {self.val_fraction} must be between 0 and 1 (e.g. 0.1)")
        if self.split not in SPLITS:
            raise LstmgenError(f"--split {self.split} must be one of {', '.join(SPLITS)}")
        if self.max_vocab is not None and self.max_vocab < 2:
            raise LstmgenError(f"--max-vocab {self.max_vocab} must be at least 2 (the unknown character and one more)")
        if self.min_count < 1:
            raise LstmgenError(f"--min-count {self.min_count} must be 1 or more")
        if self.level not in LEVELS:
            raise LstmgenError(f"--level {self.level!r} must be one of {', '.join(LEVELS)}")
        if self.level == "bpe" and self.vocab_size < 257:
            raise LstmgenError(f"--vocab-size {self.vocab_size} must be at least 257 (the 256 bytes and the reserved unknown token)")


PREPARE_FIELDS = {f.name for f in fields(PrepareConfig)}


@dataclass
class _Scan:
    """What the first pass found."""

    counter: CharCounter
    dropped: DocumentBits = field(default_factory=DocumentBits)  # ordinals of documents left out: 1 bit per document
    documents: int = 0
    characters: int = 0  # in kept documents, separators not included
    largest: int = 0  # characters of the largest document
    short: int = 0  # empty or under --min-chars
    duplicates: int = 0
    malformed_rows: int = 0


def _scan(sources: Sequence[Source], config: PrepareConfig, progress: _Progress) -> _Scan:
    exact = config.min_count > 1 or config.max_vocab is not None
    scan = _Scan(CharCounter(exact=exact))
    cleaner, cleans = Cleaner(config), config.cleans_text
    min_chars = max(config.min_chars, 1)
    seen = HashSet() if config.dedupe else None  # 12-24 bytes per distinct document
    kept_by_spec = {s.spec or s.name: 0 for s in sources}
    batch: list[str] = []
    batch_chars = 0
    tally = progress.start("counting")
    for ordinal, (source, document) in enumerate(document_stream(sources, config, tally=tally, utf8=not cleans)):
        if isinstance(document, str):
            text = cleaner.text(document) if cleans else document
            length = len(text)
            digest = text_hash(text) if seen is not None and length >= min_chars else 0
            counts = None
        else:  # a large document in chunks: counted on its own, kept only if it passes
            counts = CharCounter(exact=exact)
            hasher = Hasher()
            for chunk in cleaner.chunks(document) if cleans else document:
                counts.update(chunk)
                if seen is not None:
                    hasher.update(chunk)
                progress.advance(ordinal)
            length, digest = counts.total, hasher.value()
        if length < min_chars:
            scan.dropped.add(ordinal)
            scan.short += 1
        elif seen is not None and not seen.add(digest):
            scan.dropped.add(ordinal)
            scan.duplicates += 1
        else:
            if counts is None:
                batch.append(text)
                batch_chars += length
                if batch_chars >= BATCH_CHARS:
                    scan.counter.update("".join(batch))
                    batch, batch_chars = [], 0
            else:
                scan.counter.merge(counts)
            scan.documents += 1
            scan.characters += length
            scan.largest = max(scan.largest, length)
            kept_by_spec[source.spec or source.name] += 1
        if ordinal % 512 == 0:
            progress.advance(ordinal)
    scan.counter.update("".join(batch))
    scan.counter.update(config.doc_separator, times=max(scan.documents - 1, 0))  # separators are text the model sees too
    scan.malformed_rows = tally.malformed_rows
    for spec, kept in kept_by_spec.items():
        if not kept:
            why = []
            if scan.short:
                why.append(f"{scan.short:,} empty or under --min-chars")
            if scan.duplicates:
                why.append(f"{scan.duplicates:,} duplicates")
            if tally.malformed_rows:
                why.append(f"{tally.malformed_rows:,} malformed rows")
            detail = f" ({', '.join(why)} dropped in all)" if why else ""
            raise LstmgenError(
                f"the corpus is empty: {spec} yields no documents after cleaning{detail}; "
                f"check the file, the --column/--field/--query, or loosen --min-chars"
            )
    return scan


class _Stream:
    """Documents joined by the separator, encoded in large batches and handed to a sink."""

    def __init__(self, sink, tokenizer: CharTokenizer, dtype: np.dtype, separator: bytes):
        self.sink, self.tokenizer, self.dtype, self.separator = sink, tokenizer, dtype, separator
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.documents = 0
        self.bytes = 0  # of text taken in, for the document split's running shares
        self.unknown = 0

    def start_document(self) -> None:
        if self.documents:
            self.write(self.separator)
        self.documents += 1

    def write(self, data: bytes) -> None:
        self.pending.append(data)
        self.pending_bytes += len(data)
        self.bytes += len(data)
        if self.pending_bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.pending_bytes:
            ids = self.tokenizer.encode_utf8(b"".join(self.pending), self.dtype)
            self.unknown += len(ids) - np.count_nonzero(ids)
            self.sink(ids)
        self.pending, self.pending_bytes = [], 0


class _Files:
    """train.bin and val.bin; in the tail split, the first train_tokens go to train, the rest to val."""

    def __init__(self, folder: Path, train_tokens: int | None = None):
        self.train_file = open(folder / "train.bin", "wb")
        self.val_file = open(folder / "val.bin", "wb")
        self.train_tokens = train_tokens
        self.written = {"train": 0, "val": 0}

    def write(self, split: str, ids: np.ndarray) -> None:
        ids.tofile(self.train_file if split == "train" else self.val_file)
        self.written[split] += len(ids)

    def write_tail_split(self, ids: np.ndarray) -> None:
        room = min(max(self.train_tokens - self.written["train"], 0), len(ids))
        self.write("train", ids[:room])
        self.write("val", ids[room:])

    def close(self) -> None:
        self.train_file.close()
        self.val_file.close()


def _encode(sources, config: PrepareConfig, scan: _Scan, tokenizer: CharTokenizer, dtype, folder: Path, split: str, progress) -> dict:
    cleaner, cleans = Cleaner(config), config.cleans_text
    separator = config.doc_separator.encode("utf-8")
    streams = 1 if split == "tail" else 2  # each stream has one separator fewer than documents
    total = scan.characters + len(config.doc_separator) * max(scan.documents - streams, 0)
    val_tokens = max(2, int(round(total * config.val_fraction)))
    files = _Files(folder, train_tokens=total - val_tokens if split == "tail" else None)
    try:
        if split == "tail":
            train = val = _Stream(files.write_tail_split, tokenizer, dtype, separator)
        else:
            train = _Stream(lambda ids: files.write("train", ids), tokenizer, dtype, separator)
            val = _Stream(lambda ids: files.write("val", ids), tokenizer, dtype, separator)
        tally = progress.start("encoding")
        documents = document_stream(sources, config, tally=tally, utf8=not cleans)
        for ordinal, ((_, document), dropped) in enumerate(zip(documents, scan.dropped.flags())):
            if ordinal % 512 == 0:
                progress.advance(ordinal)
            if dropped:
                continue
            # Whole documents are held out while the held-out share is below --val-fraction.
            held_out = split == "documents" and train.bytes and val.bytes < config.val_fraction * (train.bytes + val.bytes)
            stream = val if held_out else train
            stream.start_document()
            if isinstance(document, str):
                stream.write((cleaner.text(document) if cleans else document).encode("utf-8"))
            else:
                for chunk in cleaner.chunks(document) if cleans else document:
                    stream.write(chunk if isinstance(chunk, bytes) else chunk.encode("utf-8"))
                    progress.advance(ordinal)
        train.flush()
        val.flush()
    finally:
        files.close()
    if files.written["train"] + files.written["val"] != total:
        raise LstmgenError("the sources changed while they were being prepared (the two passes disagree); prepare again")
    if files.written["train"] < 2 or files.written["val"] < 2:
        raise LstmgenError(
            f"the corpus has only {total} characters; give at least a few thousand characters of text"
        )
    return {
        "train_documents": train.documents if split == "documents" else None,
        "val_documents": val.documents if split == "documents" else None,
        "unknown_characters": int(train.unknown + (val.unknown if val is not train else 0)),
        "train_tokens": files.written["train"],
        "val_tokens": files.written["val"],
    }


def _choose_split(config: PrepareConfig, scan: _Scan) -> str:
    """Whole documents when the held-out share holds at least four of the largest one; else the tail."""
    whole = scan.documents >= 2 and scan.largest * 4 <= config.val_fraction * scan.characters
    if config.split == "documents" and scan.documents < 2:
        raise LstmgenError("--split documents needs at least 2 documents; use --split tail for a single text")
    if config.split == "auto":
        return "documents" if whole else "tail"
    return config.split


def write_store(sources: Sequence[Source], out: Path, config: PrepareConfig, *, quiet: bool = False) -> dict:
    """Prepare sources into a new token store in the folder out (created; must not exist). Returns meta."""
    started = time.perf_counter()
    progress = _Progress(sources, quiet=quiet)
    with progress:
        scan = _scan(sources, config, progress)
        split = _choose_split(config, scan)
        if config.level == "char":  # the fast path over UTF-8 bytes
            tokenizer = CharTokenizer.fit(scan.counter, min_count=config.min_count, max_vocab=config.max_vocab)
            encode = _encode
        else:  # word and bpe: a pass to fit the tokenizer, then one to encode (level_store.py)
            from . import level_store

            tokenizer = level_store.fit_tokenizer(sources, config, scan, split, progress)
            encode = level_store.encode_store
        dtype = smallest_dtype(tokenizer.vocab_size)
        out.mkdir(parents=True)
        try:
            encoded = encode(sources, config, scan, tokenizer, dtype, out, split, progress)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)  # nothing half-written is left
            raise
    seen_chars = len(scan.counter.counts)
    meta = {
        "format": STORE_FORMAT,
        "level": tokenizer.kind,
        "dtype": dtype.name,
        "vocab_size": tokenizer.vocab_size,
        "train_tokens": encoded["train_tokens"],
        "val_tokens": encoded["val_tokens"],
        "characters": encoded.get("train_characters", encoded["train_tokens"]) + encoded.get("val_characters", encoded["val_tokens"]),
        "val_characters": encoded.get("val_characters", encoded["val_tokens"]),  # bits/char = bits over these
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
            "unknown_characters": encoded.get("unknown_characters"),
            "unknown_tokens": encoded.get("unknown_tokens", encoded.get("unknown_characters")),
        },
        "vocabulary": {
            "chars_seen": seen_chars,
            "chars_kept": tokenizer.vocab_size - 1,  # tokens kept, at the word and bpe levels
            "min_count": config.min_count,
            "max_vocab": config.max_vocab,
        },
        "reading": {k: v for k, v in asdict(config).items() if k in {f.name for f in fields(ReadOptions)} and k not in ("encoding", "errors")},
        "cleaning": config.cleaning(),
        "doc_separator": config.doc_separator,
        "seconds": round(time.perf_counter() - started, 3),
        "input_bytes": progress.total_bytes,
    }
    tokenizer.save(out / "tokenizer.json")
    (out / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")  # last: marks the store whole
    return meta


def prepare(sources, *, out: str | Path, overwrite: bool = False, quiet: bool = False, **options) -> dict:
    """Prepare sources (files, folders, globs, tables, '-', 'python-docs') into a token store at `out`.

    `options` are PrepareConfig fields (column="Text", strip_html=True, val_fraction=0.05, ...).
    The store appears whole or not at all. Returns its meta.json as a dict.
    """
    unknown = set(options) - PREPARE_FIELDS
    if unknown:
        raise LstmgenError(f"unknown preparation option(s): {', '.join(sorted(unknown))}")
    config = PrepareConfig(**options)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LstmgenError(f"--out {out} is a file; name a folder for the token store")
    if out.exists() and any(out.iterdir()):
        if not is_token_store(out):
            raise LstmgenError(f"{out} exists and is not a token store; choose another --out")
        if not overwrite:
            raise LstmgenError(f"{out} already holds a token store; pass --overwrite to replace it")
    specs = [sources] if isinstance(sources, (str, Path)) else list(sources or [])
    for spec in specs:
        refuse_incomplete_store(spec)
        if Path(spec).is_dir() and is_token_store(spec):
            raise LstmgenError(f"{spec} is already a prepared token store; train on it directly: lstmgen train {spec} --out RUN")
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        resolved = resolve_sources(specs, spool_dir=partial / ".stdin", options=config)
        meta = write_store(resolved, partial / "store", config, quiet=quiet)
        if out.exists():
            shutil.rmtree(out)
        os.replace(partial / "store", out)  # the store appears whole or not at all
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    if not quiet:
        print(summary(meta, out), file=sys.stderr)
    return meta


class _Progress:
    """A progress bar on stderr (MB/s, documents/s), shown only on a terminal and without --quiet."""

    def __init__(self, sources: Sequence[Source], *, quiet: bool):
        self.total_bytes = sum(os.path.getsize(p) for p in {s.path for s in sources if s.path is not None})
        self.bar = None
        self.tally = Tally()
        self.seconds = {}
        self.phase = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description:>9}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=Console(stderr=True), transient=True,
            )

    def __enter__(self):
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self._finish_phase()
        if self.bar is not None:
            self.bar.stop()

    def start(self, phase: str) -> Tally:
        self._finish_phase()
        self.phase, self.tally, self.started = phase, Tally(), time.perf_counter()
        if self.bar is not None:
            self.task = self.bar.add_task(phase, total=max(self.total_bytes, 1), rate="")
        return self.tally

    def advance(self, documents: int) -> None:
        if self.bar is None:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        rate = f"{self.tally.bytes_read / elapsed / 1e6:6.1f} MB/s  {documents / elapsed:8,.0f} docs/s"
        self.bar.update(self.task, completed=min(self.tally.bytes_read, self.total_bytes), rate=rate)

    def _finish_phase(self) -> None:
        if self.phase is not None:
            self.seconds[self.phase] = time.perf_counter() - self.started
            self.phase = None


def summary(meta: dict, out: Path) -> str:
    """One line saying what a store holds and how fast it was made."""
    c = meta["counts"]
    dropped = [f"{n:,} {what}" for n, what in ((c["dropped_short_or_empty"], "empty/short"), (c["duplicates"], "duplicate"),
                                              (c["malformed_rows"], "malformed")) if n]
    held_out = f"{meta['val_documents']:,} whole documents" if meta["split"] == "documents" else "the tail"
    seconds = meta["seconds"]
    unit = "characters" if meta.get("level", "char") == "char" else f"{meta['level']} tokens"
    rate = f", {meta['input_bytes'] / seconds / 1e6:.0f} MB/s" if meta.get("input_bytes") and seconds > 0 else ""
    return (
        f"prepared {meta['documents']:,} document{'s' if meta['documents'] != 1 else ''}{' (dropped ' + ', '.join(dropped) + ')' if dropped else ''}: "
        f"{meta['train_tokens']:,} training / {meta['val_tokens']:,} held-out {unit} (held out: {held_out}), "
        f"vocabulary {meta['vocab_size']} -> {out} in {seconds:.1f} s{rate}"
    )
