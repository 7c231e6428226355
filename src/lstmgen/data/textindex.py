"""An index of a store's training text: its UTF-8 bytes and their suffix array (no torch).

Beside train.bin the store holds `train.text` (the decoded training split as UTF-8; an unknown
token is the byte 0xFF, which no UTF-8 text holds, so no match crosses it), `train.sa` (the
suffix array of those bytes, int32, or int64 above 2 GiB) and `train.sa.json` (their sizes,
written last: without it, or when it disagrees with the files, there is no index). The held-out
split is never in it. The sort is libdivsufsort's (pydivsufsort), writing straight into the
memory-mapped file; searches call its `sa_search` on the memory-mapped arrays.

Why bytes, not characters: divsufsort sorts bytes, and UTF-8 keeps a string's occurrences
(a string occurs in the text iff its bytes do, at a character's first byte), so spans are still
counted in characters (their first bytes); the array costs 4 bytes a byte of text.
"""

from __future__ import annotations

import ctypes
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmgen.errors import LstmgenError, say
from lstmgen.files import read_json
from lstmgen.files.disk import _fsync_file as _fsync  # the checkpoints' own fsync

TEXT, ARRAY, META = "train.text", "train.sa", "train.sa.json"
INDEX_NAMES = (TEXT, ARRAY, META, f"{TEXT}.tmp", f"{ARRAY}.tmp", f"{META}.tmp", "train.sa.lock")
INDEX_FORMAT = 1
# Above this many bytes of training text the index is built only on request: the array is
# 8 bytes a byte past 2 GiB (int64), and the sort holds text and array in memory.
BUILD_LIMIT_BYTES = (1 << 31) - 1
UNKNOWN_BYTE = b"\xff"
CHUNK_TOKENS = 1 << 22


def token_pieces(tokenizer) -> list[bytes] | None:
    """The UTF-8 bytes each token id adds to the text (None: a tokenizer whose text depends on
    the tokens before, the first word format). The unknown token is 0xFF; a control token b""."""
    if tokenizer.kind == "word" and getattr(tokenizer, "format", 2) == 1:
        return None
    if tokenizer.kind == "bpe":
        pieces = list(tokenizer.token_bytes)
    else:
        pieces = [tokenizer.token_text(i).encode("utf-8") for i in range(tokenizer.vocab_size)]
    pieces[tokenizer.unknown_id] = UNKNOWN_BYTE
    for control in getattr(tokenizer, "is_control", ()):
        pieces[control] = b""
    return pieces


def _library():
    try:
        from pydivsufsort.dll import libdivsufsort, libdivsufsort64
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise LstmgenError("the copy index needs pydivsufsort: pip install pydivsufsort") from None
    return libdivsufsort, libdivsufsort64


@dataclass
class TextIndex:
    """The training text's bytes and suffix array, memory-mapped; finds where a pattern occurs."""

    path: Path
    text: np.ndarray  # (n,) uint8
    array: np.ndarray  # (n,) int32 or int64: text offsets in sorted order of their suffixes
    characters: int

    def __post_init__(self) -> None:
        small, large = _library()
        wide = self.array.dtype == np.int64
        self._search = large.sa_search64 if wide else small.sa_search
        self._int = ctypes.c_int64 if wide else ctypes.c_int32
        self._n = self._int(len(self.text))
        self._left = self._int()
        self._left_p = ctypes.byref(self._left)
        empty = len(self.text) == 0
        self._text_p = None if empty else self.text.ctypes.data_as(ctypes.c_void_p)
        self._array_p = None if empty else self.array.ctypes.data_as(ctypes.c_void_p)

    def __len__(self) -> int:
        return len(self.text)

    def find(self, pattern: bytes) -> tuple[int, int]:
        """(first row of the suffix array whose suffix starts with pattern, how many do)."""
        if not pattern:
            return 0, len(self.text)
        if self._text_p is None:
            return 0, 0
        count = self._search(
            self._text_p, self._n, pattern, self._int(len(pattern)), self._array_p, self._n,
            self._left_p,
        )  # fmt: skip
        if count < 0:  # pragma: no cover - only for arguments out of range
            raise RuntimeError(f"sa_search failed ({count})")
        return self._left.value, count

    def occurs(self, pattern: bytes) -> bool:
        return self.find(pattern)[1] > 0

    def following(self, left: int, count: int, offset: int, width: int) -> np.ndarray:
        """The `width` bytes `offset` bytes into the suffixes of rows left .. left + count of
        the array (count, width), 0xFF past the end of the text."""
        starts = self.array[left : left + count].astype(np.int64) + offset
        where = starts[:, None] + np.arange(width)  # (count, width)
        rows = np.asarray(self.text[np.minimum(where, len(self.text) - 1)])
        rows[where >= len(self.text)] = UNKNOWN_BYTE[0]
        return rows


def _meta(store: Path) -> dict | None:
    try:
        meta = read_json(store / META, fix="its index is rebuilt")
    except (OSError, LstmgenError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def open_index(store: Path, *, train_tokens: int) -> TextIndex | None:
    """The store's index when it is whole and of these training tokens; else None."""
    meta = _meta(store)
    if not meta or meta.get("format") != INDEX_FORMAT or meta.get("train_tokens") != train_tokens:
        return None
    dtype = np.dtype(meta.get("dtype", "x")) if meta.get("dtype") in ("int32", "int64") else None
    size = meta.get("bytes")
    if dtype is None or not isinstance(size, int) or size < 0:
        return None
    try:
        if (store / TEXT).stat().st_size != size or (store / ARRAY).stat().st_size != size * (
            dtype.itemsize
        ):
            return None
        if size == 0:
            return TextIndex(store, np.zeros(0, np.uint8), np.zeros(0, dtype), 0)
        # copy-on-write maps: ctypes takes only writable arrays; nothing is ever written
        text = np.memmap(store / TEXT, dtype=np.uint8, mode="c")
        array = np.memmap(store / ARRAY, dtype=dtype, mode="c")
    except OSError:
        return None
    index = TextIndex(store, text, array, int(meta.get("characters", 0)))
    return index if _looks_sorted(index) else None


def _looks_sorted(index: TextIndex, probes: int = 64) -> bool:
    """A quick check that the array is the text's: offsets in range, and sampled neighbours'
    suffixes in order (a damaged file of the right size fails it)."""
    n = len(index.text)
    rows = np.unique(np.linspace(0, n - 2, probes).astype(np.int64)) if n > 1 else []
    for row in rows:
        a, b = int(index.array[row]), int(index.array[row + 1])
        if not (0 <= a < n and 0 <= b < n) or a == b:
            return False
        width = 256
        if bytes(index.text[a : a + width]) > bytes(index.text[b : b + width]):
            return False
    return True


@contextmanager
def _build_lock(store: Path) -> Iterator[None]:
    """One builder at a time (a second waits, then finds the index built)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(store / "train.sa.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_text(store: Path, train_ids: np.ndarray, tokenizer, out: Path) -> tuple[int, int]:
    """Decode the training ids into out as UTF-8, chunk by chunk; (bytes, characters)."""
    pieces = token_pieces(tokenizer)
    size = characters = 0
    with open(out, "wb") as f:
        if pieces is None:  # first word format: its own decode, chunk by chunk
            for start in range(0, len(train_ids), CHUNK_TOKENS):
                data = tokenizer.decode(train_ids[start : start + CHUNK_TOKENS]).encode("utf-8")
                f.write(data)
                size += len(data)
                characters += _characters(data)
            return size, characters
        lengths = np.array([len(p) for p in pieces], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        blob = np.frombuffer(b"".join(pieces) or b"\0", np.uint8)
        for start in range(0, len(train_ids), CHUNK_TOKENS):
            ids = np.asarray(train_ids[start : start + CHUNK_TOKENS], np.int64)
            lens = lengths[ids]
            total = int(lens.sum())
            # byte k of the chunk is byte (k - where its token starts) of that token's piece
            first = np.cumsum(lens) - lens
            where = np.repeat(offsets[ids] - first, lens) + np.arange(total)
            data = blob[where]
            f.write(data.tobytes())
            size += total
            characters += _characters(data)
    return size, characters


def _characters(data) -> int:
    array = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    return int(np.count_nonzero((array & 0xC0) != 0x80))


def sort_text(text_path: Path, array_path: Path, size: int) -> np.dtype:
    """The suffix array of the size bytes in text_path, sorted by libdivsufsort straight into
    array_path (memory-mapped: the sort holds text and array, 5 bytes a byte, 9 past 2 GiB)."""
    wide = size > BUILD_LIMIT_BYTES
    dtype = np.dtype(np.int64 if wide else np.int32)
    if not size:
        Path(array_path).write_bytes(b"")
        return dtype
    text = np.memmap(text_path, dtype=np.uint8, mode="c", shape=(size,))
    array = np.memmap(array_path, dtype=dtype, mode="w+", shape=(size,))
    small, large = _library()
    sort = large.divsufsort64 if wide else small.divsufsort
    c_int = ctypes.c_int64 if wide else ctypes.c_int32
    text_p, array_p = text.ctypes.data_as(ctypes.c_void_p), array.ctypes.data_as(ctypes.c_void_p)
    failed = sort(text_p, array_p, c_int(size))
    if failed:  # pragma: no cover - out of memory inside the library
        raise LstmgenError(f"sorting {text_path} for the copy index failed ({failed})")
    array.flush()
    return dtype


def build_index(store: Path, train_ids: np.ndarray, tokenizer, *, quiet: bool = False) -> TextIndex:
    """Decode and sort the training split into the store (temporary names, renamed when whole;
    the sizes file last), unless another process built it meanwhile."""
    store = Path(store)
    train_tokens = len(train_ids)
    with _build_lock(store):
        index = open_index(store, train_tokens=train_tokens)
        if index is not None:
            return index
        (store / META).unlink(missing_ok=True)  # from here until it is rewritten: no index
        started = time.perf_counter()
        size, characters = write_text(store, train_ids, tokenizer, store / f"{TEXT}.tmp")
        dtype = sort_text(store / f"{TEXT}.tmp", store / f"{ARRAY}.tmp", size)
        for name in (TEXT, ARRAY):
            _fsync(store / f"{name}.tmp")
            os.replace(store / f"{name}.tmp", store / name)
        meta = {
            "format": INDEX_FORMAT,
            "train_tokens": train_tokens,
            "bytes": size,
            "characters": characters,
            "dtype": dtype.name,
            "build_s": round(time.perf_counter() - started, 3),
        }
        (store / f"{META}.tmp").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _fsync(store / f"{META}.tmp")
        os.replace(store / f"{META}.tmp", store / META)
        if not quiet:
            say(
                f"copy index of the training text built: {size / 1e6:.1f} MB in "
                f"{meta['build_s']:.1f} s ({store / ARRAY})"
            )
    index = open_index(store, train_tokens=train_tokens)
    if index is None:  # pragma: no cover - the files changed under us
        raise LstmgenError(f"the copy index of {store} could not be read back; try again")
    return index
