"""Preparation at the word and BPE levels: fit the tokenizer in a pass over the kept documents,
then encode them into train.bin / val.bin, splitting on characters as the char level does.

preparation.py has already scanned the sources (dropped documents, the split, the character
count); this module adds the passes that need a tokenizer other than characters. Text is
streamed in pieces cut at whitespace, so no document is ever held whole in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .clean import Cleaner
from .errors import LstmgenError
from .sources import document_stream
from .words import WordCounter, WordTokenizer

PIECE_CHARS = 1 << 20  # text is tokenized in pieces of about this size, cut at whitespace
DEFAULT_MAX_WORDS = 20_000


def _at_whitespace(pieces, limit: int = PIECE_CHARS) -> Iterator[str]:
    """Re-cut a document's chunks so that each piece ends at whitespace (no word is split)."""
    held = ""
    for piece in pieces:
        text = held + (piece.decode("utf-8") if isinstance(piece, bytes) else piece)
        cut = max(text.rfind(" "), text.rfind("\n")) + 1
        if not cut and len(text) < limit:
            held = text
            continue
        cut = cut or len(text)
        if cut:
            yield text[:cut]
        held = text[cut:]
    if held:
        yield held


def _kept_documents(sources, config, scan, progress, phase: str) -> Iterator[Iterator[str]]:
    """Each document the scan kept, cleaned, as an iterator of whitespace-cut pieces."""
    cleaner, cleans = Cleaner(config), config.cleans_text
    tally = progress.start(phase)
    documents = document_stream(sources, config, tally=tally, utf8=False)
    for ordinal, ((_, document), dropped) in enumerate(zip(documents, scan.dropped.flags())):
        if ordinal % 512 == 0:
            progress.advance(ordinal)
        if dropped:
            continue
        if isinstance(document, str):
            yield iter([cleaner.text(document) if cleans else document])
        else:
            yield _at_whitespace(cleaner.chunks(document) if cleans else document)


def fit_tokenizer(sources, config, scan, split: str, progress):
    """A word or BPE tokenizer fitted on the training text alone (one streaming pass).

    The held-out text must stay unseen: a vocabulary or merges learnt from it would
    flatter the held-out bits/char (no held-out word could be unknown).
    """
    pieces = _training_pieces(sources, config, scan, split, progress)
    if config.level == "bpe":
        from .bpe import BpeTokenizer

        return BpeTokenizer.train(pieces, vocab_size=config.vocab_size)
    counter = WordCounter()
    for piece in pieces:
        counter.update(piece)
    return WordTokenizer.fit(counter, min_count=config.min_count, max_vocab=config.max_vocab or DEFAULT_MAX_WORDS)


def _total_characters(config, scan, split: str) -> int:
    """Characters written to train.bin and val.bin together, separators included."""
    streams = 1 if split == "tail" else 2  # each stream has one separator fewer than documents
    return scan.characters + len(config.doc_separator) * max(scan.documents - streams, 0)


def _train_room(config, scan, split: str) -> int:
    """In the tail split, how many characters go to train.bin."""
    total = _total_characters(config, scan, split)
    return total - max(2, int(round(total * config.val_fraction)))


def _holds_out(split: str, train_characters: int, val_characters: int, val_fraction: float) -> bool:
    """In the documents split, whether the next document goes to val.bin (decided before it is read)."""
    return split == "documents" and train_characters > 0 and val_characters < val_fraction * (train_characters + val_characters)


def _training_pieces(sources, config, scan, split: str, progress) -> Iterator[str]:
    """The text that encode_store will write to train.bin (separators included), in pieces."""
    separator, documents = config.doc_separator, _kept_documents(sources, config, scan, progress, "fitting")
    if split == "tail":
        room = _train_room(config, scan, split)
        for index, pieces in enumerate(documents):
            for piece in _with_separator(index == 0, separator, pieces):
                if room <= 0:
                    return
                yield piece[:room]
                room -= len(piece)
        return
    counts = {"train": [0, 0], "val": [0, 0]}  # documents, characters
    for pieces in documents:
        side = "val" if _holds_out(split, counts["train"][1], counts["val"][1], config.val_fraction) else "train"
        tally = counts[side]
        if tally[0]:
            tally[1] += len(separator)
            if side == "train":
                yield separator
        tally[0] += 1
        for piece in pieces:
            tally[1] += len(piece)
            if side == "train":
                yield piece


class _Split:
    """train.bin or val.bin: text in, token ids out; characters and tokens counted."""

    def __init__(self, path: Path, tokenizer, dtype: np.dtype):
        self.file, self.tokenizer, self.dtype = open(path, "wb"), tokenizer, dtype
        self.pending: list[str] = []
        self.pending_chars = self.characters = self.tokens = self.documents = self.unknown = 0

    def start_document(self, separator: str) -> None:
        if self.documents:
            self.write(separator)
        self.documents += 1

    def write(self, text: str) -> None:
        self.pending.append(text)
        self.pending_chars += len(text)
        self.characters += len(text)
        if self.pending_chars >= PIECE_CHARS:
            self.flush(final=False)

    def flush(self, *, final: bool = True) -> None:
        text = "".join(self.pending)
        cut = len(text) if final else (max(text.rfind(" "), text.rfind("\n")) + 1 or len(text))
        ids = self.tokenizer.encode(text[:cut])
        ids.astype(self.dtype).tofile(self.file)
        self.tokens += len(ids)
        self.unknown += int(np.count_nonzero(ids == self.tokenizer.unknown_id))
        self.pending = [text[cut:]]
        self.pending_chars = len(text) - cut

    def close(self) -> None:
        self.file.close()


def encode_store(sources, config, scan, tokenizer, dtype, folder: Path, split: str, progress) -> dict:
    """Encode the kept documents into folder/train.bin and val.bin; held out by characters, as at the char level."""
    separator = config.doc_separator
    total, train_room = _total_characters(config, scan, split), _train_room(config, scan, split)
    train, val = _Split(folder / "train.bin", tokenizer, dtype), _Split(folder / "val.bin", tokenizer, dtype)
    try:
        for pieces in _kept_documents(sources, config, scan, progress, "encoding"):
            if split == "tail":
                _write_tail(train, val, separator, pieces, train_room)
                continue
            stream = val if _holds_out(split, train.characters, val.characters, config.val_fraction) else train
            stream.start_document(separator)
            for piece in pieces:
                stream.write(piece)
        train.flush()
        val.flush()
    finally:
        train.close()
        val.close()
    if train.characters + val.characters != total:
        raise LstmgenError("the sources changed while they were being prepared (the two passes disagree); prepare again")
    if train.tokens < 2 or val.tokens < 2:
        raise LstmgenError(f"the corpus has only {train.tokens + val.tokens} {tokenizer.kind} tokens; give at least a few thousand characters of text")
    return {
        "train_documents": train.documents if split == "documents" else None,
        "val_documents": val.documents if split == "documents" else None,
        "unknown_tokens": train.unknown + val.unknown,
        "train_tokens": train.tokens,
        "val_tokens": val.tokens,
        "train_characters": train.characters,
        "val_characters": val.characters,
    }


def _write_tail(train: _Split, val: _Split, separator: str, pieces, train_room: int) -> None:
    """One document of the tail split: the first train_room characters of all text go to train, the rest to val."""
    first = not (train.documents or val.documents)
    train.documents += 1
    for piece in _with_separator(first, separator, pieces):
        room = train_room - train.characters
        if room >= len(piece):
            train.write(piece)
            continue
        if room > 0:
            train.write(piece[:room])
        val.write(piece[max(room, 0):])


def _with_separator(first: bool, separator: str, pieces) -> Iterator[str]:
    if not first:
        yield separator
    yield from pieces
