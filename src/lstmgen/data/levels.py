"""What preparation does differently at each level: how kept documents are read into pieces,
how pieces become token ids, and (word, BPE) the pass that fits the tokenizer.

The char level stays on UTF-8 bytes, decoded only when cleaning needs text: encoding is most
of the time of preparing a large corpus; its vocabulary is fitted on the ids train.bin got
(TrainingIds). Word and BPE text is cut into pieces before whitespace, so no document is ever
held whole in memory and encoding piece by piece gives the tokens of encoding whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from lstmgen.config import DataConfig
from lstmgen.data.clean import Cleaner
from lstmgen.data.docsets import DocumentBits
from lstmgen.data.reading import Source
from lstmgen.data.sources import document_stream
from lstmgen.data.splits import Piece, Router, SplitPlan, remap_splits
from lstmgen.data.store import smallest_dtype
from lstmgen.tokens import BpeTokenizer, CharTokenizer, Conditions, WordCounter, WordTokenizer
from lstmgen.tokens.conditions import DOCUMENT_MARK

FLUSH_BYTES = 4 << 20  # the char level encodes about this many bytes at a time
PIECE_CHARS = 1 << 20  # word and BPE text is tokenized in pieces of about this size
DEFAULT_MAX_WORDS = 20_000
# Greedy: up to the last non-space character followed by a space or newline (whitespace to
# both Python and the BPE pre-tokenizer, whose \s is narrower: "\x1c" is not in it).
LAST_WORD_END = re.compile(r".*\S(?=[ \n])", re.DOTALL)


class CharEncoder:
    """The char level: UTF-8 bytes in, one id per character out; no str between (the fast path)."""

    takes_bytes = True
    ids_are_characters = True
    flush_length = FLUSH_BYTES  # bytes; where a batch ends does not change the ids
    unit = "characters"

    def __init__(self, tokenizer: CharTokenizer, dtype: np.dtype):
        self.tokenizer, self.dtype = tokenizer, dtype

    def piece(self, text: str) -> bytes:
        return text.encode("utf-8")

    def encode(self, pending: list[bytes], *, final: bool) -> tuple[np.ndarray, bytes]:
        return self.tokenizer.encode_utf8(b"".join(pending), self.dtype), b""


class TrainingIds:
    """Which char-level ids train.bin holds (exact: how many of each), counted as it is written.

    Without exact, only new uint8 ids are looked for (deleting the ones seen: fast).
    """

    def __init__(self, vocab_size: int, *, exact: bool):
        self.exact = exact
        self.counts = np.zeros(vocab_size, dtype=np.int64)
        self._seen = b""

    def update(self, ids: np.ndarray) -> None:
        if self.exact or ids.dtype != np.uint8:
            self.counts += np.bincount(ids, minlength=len(self.counts))
            return
        new = ids.tobytes().translate(None, self._seen)
        if new:
            self.counts[np.frombuffer(new, np.uint8)] = 1
            self._seen = bytes(np.flatnonzero(self.counts).astype(np.uint8))


def refit_chars(
    tokenizer: CharTokenizer,
    train_ids: TrainingIds,
    config: DataConfig,
    folder: Path,
    *,
    marks: Sequence[str] = (),
) -> tuple[CharTokenizer, dict[str, int] | None]:
    """The char vocabulary of the training text alone, from the store written with every
    character seen: those train.bin lacks, or that fail --min-count / --max-vocab there, become
    the unknown id in both files (rewritten only then). Returns it and the unknown ids by file.

    A character only the held-out text has must stay unknown, as it would be in new text.
    Control tokens (marks) are kept whatever --min-count and --max-vocab say.
    """
    fitted = with_marks(
        tokenizer.refitted(
            train_ids.counts, min_count=config.min_count, max_vocab=config.max_vocab
        ),
        marks,
    )
    if fitted.chars == tokenizer.chars:
        return tokenizer, None
    table = tokenizer.ids_in(fitted, smallest_dtype(fitted.vocab_size))
    return fitted, remap_splits(folder, table, smallest_dtype(tokenizer.vocab_size))


def with_marks(tokenizer, marks: Sequence[str]):
    """A char or word tokenizer whose vocabulary holds the control tokens `marks`."""
    if tokenizer.kind == "char":
        missing = [m for m in marks if m not in tokenizer.chars]
        return CharTokenizer(sorted([*tokenizer.chars, *missing])) if missing else tokenizer
    missing = [m for m in marks if m not in set(tokenizer.words)]
    return WordTokenizer([*tokenizer.words, *missing]) if missing else tokenizer


def extended(base, fitted):
    """A base run's char or word vocabulary, then what `fitted` (the new text's) adds: the
    base's ids keep their meaning, so its weights keep their rows (fine-tuning)."""
    if base.kind == "char":
        known = set(base.chars)
        return CharTokenizer([*base.chars, *(c for c in fitted.chars if c not in known)])
    known = set(base.words)
    return WordTokenizer([*base.words, *(w for w in fitted.words if w not in known)])


class TextEncoder:
    """Word and BPE: text in, encoded up to its last whitespace after a word, where a token ends
    whatever follows (tokens carry the space before a word, never the one after)."""

    takes_bytes = False
    ids_are_characters = False
    flush_length = PIECE_CHARS  # characters; batches end before whitespace, as tokens do

    def __init__(self, tokenizer: WordTokenizer | BpeTokenizer, dtype: np.dtype):
        self.tokenizer, self.dtype = tokenizer, dtype
        self.unit = f"{tokenizer.kind} tokens"

    def piece(self, text: str) -> str:
        return text

    def encode(self, pending: list[str], *, final: bool) -> tuple[np.ndarray, str]:
        text = "".join(pending)
        cut = len(text) if final else (last_word_end(text) or len(text))
        return self.tokenizer.encode(text[:cut]).astype(self.dtype), text[cut:]


def encoder_for(tokenizer, dtype: np.dtype) -> CharEncoder | TextEncoder:
    """The encoder that writes a store with this tokenizer."""
    if tokenizer.kind == "char":
        return CharEncoder(tokenizer, dtype)
    return TextEncoder(tokenizer, dtype)


def kept_documents(
    sources: Sequence[Source],
    config: DataConfig,
    dropped: DocumentBits,
    progress,
    phase: str,
    *,
    as_bytes: bool,
    conditions: Conditions | None = None,
    labels: list | None = None,
) -> Iterator[Iterable[Piece]]:
    """Each document the scan kept, cleaned, as pieces: UTF-8 bytes or text cut at whitespace.
    A (conditions, text) row starts with the document mark; its values' numbers are appended
    to `labels` when given, in document order."""
    cleaner, cleans = Cleaner(config), config.cleans_text
    tally = progress.start(phase)
    documents = document_stream(sources, config, tally=tally, utf8=as_bytes and not cleans)
    flags = dropped.flags()  # without end: the documents end the pass
    for ordinal, ((_, document), left_out) in enumerate(zip(documents, flags, strict=False)):
        if ordinal % 512 == 0:
            progress.advance(ordinal)
        if left_out:
            continue
        mark = ""
        if isinstance(document, tuple):
            if conditions:
                mark = DOCUMENT_MARK
                if labels is not None:
                    labels.append(conditions.of_document(document[0]))
            document = document[1]
        if isinstance(document, str):
            text = mark + (cleaner.text(document) if cleans else document)
            yield (text.encode("utf-8"),) if as_bytes else (text,)
            continue
        chunks = _advancing(cleaner.chunks(document) if cleans else document, progress, ordinal)
        yield _as_utf8(chunks) if as_bytes else _at_whitespace(chunks)


def _advancing(chunks: Iterable, progress, ordinal: int) -> Iterator:
    for chunk in chunks:
        yield chunk
        progress.advance(ordinal)


def _as_utf8(chunks: Iterable[bytes | str]) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk if isinstance(chunk, bytes) else chunk.encode("utf-8")


def _at_whitespace(chunks: Iterable[bytes | str], limit: int = PIECE_CHARS) -> Iterator[str]:
    """Re-cut a document's chunks so that each piece ends before whitespace, after a word."""
    held = ""
    for chunk in chunks:
        text = held + (chunk.decode("utf-8") if isinstance(chunk, bytes) else chunk)
        cut = last_word_end(text)
        if not cut and len(text) < limit:
            held = text
            continue
        cut = cut or len(text)
        if cut:
            yield text[:cut]
        held = text[cut:]
    if held:
        yield held


def last_word_end(text: str) -> int:
    """Where text's last space or newline after a non-space character is; 0 where none is.

    A token ends there at the word and BPE levels, whatever follows: cut there, the pieces
    encode to the tokens of the whole text.
    """
    match = LAST_WORD_END.match(text)
    return match.end() if match else 0


def fit_tokenizer(
    documents: Iterable[Iterable[str]],
    plan: SplitPlan,
    config: DataConfig,
    *,
    marks: Sequence[str] = (),
) -> WordTokenizer | BpeTokenizer:
    """A word or BPE tokenizer fitted on the training text alone (one streaming pass).

    The held-out text must stay unseen: a vocabulary or merges learnt from it would
    flatter the held-out bits/char (no held-out word could be unknown).
    """
    pieces = _training_text(documents, plan)
    if config.level == "bpe":
        return BpeTokenizer.train(pieces, vocab_size=config.vocab_size, specials=marks)
    counter = WordCounter()
    for piece in pieces:
        counter.update(piece)
    max_vocab = config.max_vocab or DEFAULT_MAX_WORDS
    fitted = WordTokenizer.fit(counter, min_count=config.min_count, max_vocab=max_vocab)
    return with_marks(fitted, marks)


def _training_text(documents: Iterable[Iterable[str]], plan: SplitPlan) -> Iterator[str]:
    """The text write_splits puts in train.bin (separators included), in the same pieces.

    The same Router decides each piece's side; each write hands train at most one piece.
    In the tail split, reading stops once train is full.
    """
    train, val = _Seen(keep=True), _Seen(keep=False)
    router = Router(plan, plan.separator, train, val, cut_tail=True)
    for pieces in documents:
        if router.train_full:
            return
        write = router.start_document()
        if train.pieces:
            yield train.pieces.pop()
        for piece in pieces:
            if router.train_full:
                return
            write(piece)
            if train.pieces:
                yield train.pieces.pop()


class _Seen:
    """A side while fitting: its length counted, its pieces kept if the tokenizer sees them."""

    def __init__(self, *, keep: bool):
        self.keep, self.length, self.pieces = keep, 0, []

    def write(self, piece: str) -> None:
        self.length += len(piece)
        if self.keep:
            self.pieces.append(piece)
