"""The held-out split and the train.bin / val.bin writers, the same at every level.

SplitPlan says where the held-out text comes from, Router sends each document's pieces to
its side, SplitWriter encodes them in batches; write_splits runs them over the kept
documents. How a batch becomes token ids is the level's encoder (levels.py). remap_splits
rewrites both files through a table of ids (the char vocabulary refitted on train.bin).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from lstmgen.errors import LstmgenError

Piece = bytes | str  # UTF-8 bytes at the char level, text at word and BPE
SIDES = ("train", "val")
REMAP_IDS = 1 << 22  # remap_splits reads this many ids at a time


@dataclass(frozen=True)
class SplitPlan:
    """Where the held-out text comes from, decided once the scan has counted the corpus."""

    kind: str  # "documents" (whole documents held out) or "tail" (the end of the text)
    val_fraction: float
    separator: str
    total_characters: int  # written to train.bin and val.bin together, separators included
    train_characters: int  # in the tail split, what train.bin gets: all but the held-out share

    @classmethod
    def for_corpus(
        cls, kind: str, val_fraction: float, separator: str, characters: int, documents: int
    ) -> SplitPlan:
        """The plan for kept documents of these many characters, separators not included."""
        sides = 1 if kind == "tail" else 2  # each side has one separator fewer than documents
        total = characters + len(separator) * max(documents - sides, 0)
        held_out = max(2, int(round(total * val_fraction)))
        return cls(kind, val_fraction, separator, total, total - held_out)


class Side(Protocol):
    """Where one side's pieces go: a SplitWriter, or while fitting, what the tokenizer sees."""

    length: int  # of all the pieces written: len(), in the unit the encoder takes in

    def write(self, piece: Piece) -> None: ...


class Router:
    """Sends each document, and the separators between documents, to train or val.

    Text is measured with len() of the pieces, in the unit the level's encoder takes in:
    UTF-8 bytes at the char level, characters at word and BPE. The documents split compares
    these lengths, so the char level weighs its sides in bytes and word/BPE in characters;
    which documents are held out depends on it, so each level keeps its unit. The tail
    split's room is in characters, so the router cuts it only when cut_tail (str pieces);
    the char level cuts it in the ids instead, one per character (write_splits).
    """

    def __init__(
        self, plan: SplitPlan, separator: Piece, train: Side, val: Side, *, cut_tail: bool
    ):
        self.plan, self.separator = plan, separator
        self.train, self.val = train, val
        self.writes = {"train": train.write, "val": val.write}
        self.by_documents = plan.kind == "documents"
        self.cut_tail = cut_tail and plan.kind == "tail"
        self.documents = dict.fromkeys(SIDES, 0)  # all in train in the tail split
        self.sides = bytearray()  # each document's side in order: 0 train, 1 val

    @property
    def train_full(self) -> bool:
        """In the tail split, whether train has all its characters (the rest goes to val)."""
        return self.plan.kind == "tail" and self.train.length >= self.plan.train_characters

    def start_document(self) -> Callable[[Piece], None]:
        """Choose the next document's side, write the separator due before it, and return
        what takes the document's pieces (chosen once a document: one call a piece)."""
        side = "train"
        if self.by_documents:
            # Whole documents are held out while the held-out share is below --val-fraction.
            train, val = self.train.length, self.val.length
            if train and val < self.plan.val_fraction * (train + val):
                side = "val"
        write = self._write_tail if self.cut_tail else self.writes[side]
        if self.documents[side]:
            write(self.separator)
        self.documents[side] += 1
        self.sides.append(side == "val")
        return write

    def _write_tail(self, piece: Piece) -> None:
        """The tail split cut in the text: the first train_characters to train, the rest to val."""
        room = self.plan.train_characters - self.train.length
        if room >= len(piece):
            self.train.write(piece)
            return
        if room > 0:
            self.train.write(piece[:room])
        self.val.write(piece[max(room, 0) :])


class Encoder(Protocol):
    """How a level turns a batch of pieces into token ids (levels.py has one per level)."""

    flush_length: int  # a writer encodes once this much (len of its pieces) is pending
    ids_are_characters: bool  # one token per character: the char level
    unit: str  # what a token is, for messages

    def piece(self, text: str) -> Piece:
        """Text as a piece this encoder takes (the separator between documents)."""

    def encode(self, pending: list, *, final: bool) -> tuple[np.ndarray, Piece]:
        """Token ids of the pending pieces, and the end left to encode with what follows."""


class SplitWriter:
    """train.bin or val.bin: pieces in, encoded in batches; token ids out to a sink."""

    def __init__(self, encoder: Encoder, sink: Callable[[np.ndarray], None]):
        self.encoder, self.sink = encoder, sink
        self.pending: list = []
        self.pending_length = 0
        self.length = 0  # of all the pieces written: len(), in the unit the encoder takes in
        self.unknown = 0  # tokens with the unknown id, 0 at every level

    def write(self, piece: Piece) -> None:
        self.pending.append(piece)
        self.pending_length += len(piece)
        self.length += len(piece)
        if self.pending_length >= self.encoder.flush_length:
            self.flush(final=False)

    def flush(self, *, final: bool = True) -> None:
        """Encode what is pending (all of it when final) and hand the ids to the sink."""
        if self.pending_length:
            ids, rest = self.encoder.encode(self.pending, final=final)
            self.unknown += len(ids) - int(np.count_nonzero(ids))
            self.sink(ids)
            self.pending, self.pending_length = ([rest] if rest else []), len(rest)


class IdTally(Protocol):
    """What counts the ids written to train.bin (levels.TrainingIds)."""

    def update(self, ids: np.ndarray) -> None: ...


class _SplitFiles:
    """train.bin and val.bin (open binary files), and the tokens written to each."""

    def __init__(self, files: dict[str, BinaryIO], train_ids: IdTally | None):
        self.files, self.train_ids = files, train_ids
        self.tokens = dict.fromkeys(SIDES, 0)

    def write(self, side: str, ids: np.ndarray) -> None:
        ids.tofile(self.files[side])
        self.tokens[side] += len(ids)
        if side == "train" and self.train_ids is not None:
            self.train_ids.update(ids)

    def write_tail(self, train_tokens: int, ids: np.ndarray) -> None:
        """The tail split cut in the ids: the first train_tokens go to train, the rest to val."""
        room = min(max(train_tokens - self.tokens["train"], 0), len(ids))
        self.write("train", ids[:room])
        self.write("val", ids[room:])


def write_splits(
    documents: Iterable[Iterable[Piece]],
    plan: SplitPlan,
    encoder: Encoder,
    folder: Path,
    *,
    train_ids: IdTally | None = None,
) -> dict:
    """Encode documents (each an iterable of pieces) into folder/train.bin and val.bin; the ids
    written to train.bin are counted by train_ids when given."""
    # Where a token is a character, the tail is cut in the ids: bytes need no decoding to count.
    cut_ids = plan.kind == "tail" and encoder.ids_are_characters
    with open(folder / "train.bin", "wb") as train, open(folder / "val.bin", "wb") as val:
        files = _SplitFiles({"train": train, "val": val}, train_ids)
        sinks = {side: partial(files.write, side) for side in SIDES}
        if cut_ids:
            sinks["train"] = partial(files.write_tail, plan.train_characters)
        writers = {side: SplitWriter(encoder, sinks[side]) for side in SIDES}
        router = Router(
            plan,
            encoder.piece(plan.separator),
            writers["train"],
            writers["val"],
            cut_tail=not cut_ids,
        )
        for pieces in documents:
            write = router.start_document()
            for piece in pieces:
                write(piece)
        for writer in writers.values():
            writer.flush()
    lengths = {side: writer.length for side, writer in writers.items()}
    characters = files.tokens if encoder.ids_are_characters else lengths
    if sum(characters.values()) != plan.total_characters:
        raise LstmgenError(
            "the sources changed while they were being prepared "
            "(the two passes disagree); prepare again"
        )
    if min(files.tokens.values()) < 2:
        raise LstmgenError(
            f"the corpus has only {sum(files.tokens.values())} {encoder.unit}; "
            f"give at least a few thousand characters of text"
        )
    unknown = sum(writer.unknown for writer in writers.values())
    by_documents = plan.kind == "documents"
    return {
        "train_documents": router.documents["train"] if by_documents else None,
        "val_documents": router.documents["val"] if by_documents else None,
        "train_tokens": files.tokens["train"],
        "val_tokens": files.tokens["val"],
        "train_characters": characters["train"],
        "val_characters": characters["val"],
        "unknown_tokens": unknown,
        # Only where a token is a character is an unknown token one unknown character.
        "unknown_characters": unknown if encoder.ids_are_characters else None,
        "document_sides": bytes(router.sides),  # popped by the caller: not for meta.json
    }


def remap_splits(folder: Path, table: np.ndarray, dtype: np.dtype) -> dict[str, int]:
    """Rewrite folder/train.bin and val.bin (of dtype) with table[id] for each id, in the
    table's dtype, a slice at a time; returns the unknown ids (0) now in each."""
    unknown = {}
    for side in SIDES:
        path, unknown[side] = folder / f"{side}.bin", 0
        remapped = path.with_suffix(".remap")
        with open(path, "rb") as source, open(remapped, "wb") as out:
            while len(ids := np.fromfile(source, dtype=dtype, count=REMAP_IDS)):
                new = _looked_up(table, ids)
                unknown[side] += len(new) - int(np.count_nonzero(new))
                new.tofile(out)
        os.replace(remapped, path)
    return unknown


def _looked_up(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """table[ids]; bytes through bytes.translate, which needs no 8-byte index per id."""
    if ids.dtype == np.uint8 and table.dtype == np.uint8:
        return np.frombuffer(ids.tobytes().translate(table.tobytes().ljust(256, b"\0")), np.uint8)
    return np.take(table, ids)
