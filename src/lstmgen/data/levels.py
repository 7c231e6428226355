"""What preparation does differently at each level: how kept documents are read into pieces,
how pieces become token ids, and (word, BPE) the pass that fits the tokenizer.

The char level stays on UTF-8 bytes, decoded only when cleaning needs text: encoding is most
of the time of preparing a large corpus. Word and BPE text is cut into pieces at whitespace,
so no document is ever held whole in memory and no word is split between two batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from lstmgen.config import DataConfig
from lstmgen.data.clean import Cleaner
from lstmgen.data.docsets import DocumentBits
from lstmgen.data.reading import Source
from lstmgen.data.sources import document_stream
from lstmgen.data.splits import Piece, Router, SplitPlan
from lstmgen.tokens import BpeTokenizer, CharTokenizer, WordCounter, WordTokenizer

FLUSH_BYTES = 4 << 20  # the char level encodes about this many bytes at a time
PIECE_CHARS = 1 << 20  # word and BPE text is tokenized in pieces of about this size
DEFAULT_MAX_WORDS = 20_000


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


class TextEncoder:
    """Word and BPE: text in, encoded up to its last whitespace so that no word is split."""

    takes_bytes = False
    ids_are_characters = False
    flush_length = PIECE_CHARS  # characters; batches end at whitespace, which the ids depend on

    def __init__(self, tokenizer: WordTokenizer | BpeTokenizer, dtype: np.dtype):
        self.tokenizer, self.dtype = tokenizer, dtype
        self.unit = f"{tokenizer.kind} tokens"

    def piece(self, text: str) -> str:
        return text

    def encode(self, pending: list[str], *, final: bool) -> tuple[np.ndarray, str]:
        text = "".join(pending)
        cut = len(text) if final else (_after_last_space(text) or len(text))
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
) -> Iterator[Iterable[Piece]]:
    """Each document the scan kept, cleaned, as pieces: UTF-8 bytes or text cut at whitespace."""
    cleaner, cleans = Cleaner(config), config.cleans_text
    tally = progress.start(phase)
    documents = document_stream(sources, config, tally=tally, utf8=as_bytes and not cleans)
    flags = dropped.flags()  # without end: the documents end the pass
    for ordinal, ((_, document), left_out) in enumerate(zip(documents, flags, strict=False)):
        if ordinal % 512 == 0:
            progress.advance(ordinal)
        if left_out:
            continue
        if isinstance(document, str):
            text = cleaner.text(document) if cleans else document
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
    """Re-cut a document's chunks so that each piece ends at whitespace (no word is split)."""
    held = ""
    for chunk in chunks:
        text = held + (chunk.decode("utf-8") if isinstance(chunk, bytes) else chunk)
        cut = _after_last_space(text)
        if not cut and len(text) < limit:
            held = text
            continue
        cut = cut or len(text)
        if cut:
            yield text[:cut]
        held = text[cut:]
    if held:
        yield held


def _after_last_space(text: str) -> int:
    """Where text ends at its last space or newline; 0 where it has neither."""
    return max(text.rfind(" "), text.rfind("\n")) + 1


def fit_tokenizer(
    documents: Iterable[Iterable[str]], plan: SplitPlan, config: DataConfig
) -> WordTokenizer | BpeTokenizer:
    """A word or BPE tokenizer fitted on the training text alone (one streaming pass).

    The held-out text must stay unseen: a vocabulary or merges learnt from it would
    flatter the held-out bits/char (no held-out word could be unknown).
    """
    pieces = _training_text(documents, plan)
    if config.level == "bpe":
        return BpeTokenizer.train(pieces, vocab_size=config.vocab_size)
    counter = WordCounter()
    for piece in pieces:
        counter.update(piece)
    max_vocab = config.max_vocab or DEFAULT_MAX_WORDS
    return WordTokenizer.fit(counter, min_count=config.min_count, max_vocab=max_vocab)


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
