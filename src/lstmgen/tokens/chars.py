"""The char level: one token per Unicode code point seen in training (CharTokenizer, CharCounter).

Its counter and encoder work on UTF-8 bytes without decoding where they can (utf8.py):
preparing a large corpus is mostly this.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lstmgen.tokens.utf8 import ASCII, NON_ASCII, lead_code_points

TOKENIZER_FORMAT = 1
UNKNOWN_ID = 0


def code_points(text: str) -> np.ndarray:
    """The Unicode code points of text, as a uint32 array (no Python loop)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class CharCounter:
    """Counts characters over a stream of chunks (str or UTF-8 bytes), for fitting a CharTokenizer.

    With exact=False only which characters occur is tracked for ASCII (much faster);
    the counts are then good for fitting with min_count=1 and no max_vocab only.
    """

    def __init__(self, *, exact: bool = True) -> None:
        self.exact = exact
        self.array = np.zeros(128, dtype=np.int64)  # count by code point
        self.total = 0
        self._seen_ascii = b""

    @property
    def counts(self) -> dict[int, int]:
        present = np.flatnonzero(self.array)
        return dict(zip(present.tolist(), self.array[present].tolist(), strict=True))

    def update(self, text: str | bytes, *, times: int = 1) -> None:
        """Count the characters of text (a str, or valid UTF-8 bytes), `times` over."""
        if times != 1:
            once = CharCounter()
            once.update(text)
            once.array *= times
            once.total *= times
            self.merge(once)
            return
        data = (
            text if isinstance(text, bytes) else text.encode("ascii" if text.isascii() else "utf-8")
        )
        if self.exact:
            multibyte = b"" if data.isascii() else data.translate(None, ASCII)
            self.array[:128] += np.bincount(np.frombuffer(data, np.uint8), minlength=256)[:128]
        else:
            # new ASCII characters and all multi-byte ones
            rest = data.translate(None, self._seen_ascii)
            multibyte = rest.translate(None, ASCII)
            new = rest.translate(None, NON_ASCII)
            if new:
                self.array[np.frombuffer(new, np.uint8)] += 1
                self._seen_ascii = bytes(np.flatnonzero(self.array[:128]).astype(np.uint8))
        self.total += len(data) - len(multibyte)
        if multibyte:
            points = code_points(multibyte.decode("utf-8"))
            self.total += len(points)
            self.add(np.bincount(points))

    def add(self, counts: np.ndarray) -> None:
        """Add counts indexed by code point (another counter's array)."""
        if len(counts) > len(self.array):
            self.array = np.concatenate(
                [self.array, np.zeros(len(counts) - len(self.array), np.int64)]
            )
        self.array[: len(counts)] += counts

    def merge(self, other: CharCounter) -> None:
        self.add(other.array)
        self.total += other.total
        if not self.exact:
            self._seen_ascii = bytes(np.flatnonzero(self.array[:128]).astype(np.uint8))


class CharTokenizer:
    """One token per Unicode code point seen in training; id 0 is the unknown character."""

    kind = "char"
    unknown_id = UNKNOWN_ID
    never_generated = (UNKNOWN_ID,)
    unknown_text = "\ufffd"

    def __init__(self, chars: Iterable[str]):
        self.chars: list[str] = list(chars)
        if len(set(self.chars)) != len(self.chars) or any(
            not isinstance(c, str) or len(c) != 1 for c in self.chars
        ):
            raise ValueError("chars must be distinct single characters")
        self._id_of = {c: i + 1 for i, c in enumerate(self.chars)}
        max_cp = max((ord(c) for c in self.chars), default=0)
        # code point -> id; 0 = unknown, also the last entry
        self._lut = np.zeros(max(max_cp + 2, 130), dtype=np.int64)
        for c, i in self._id_of.items():
            self._lut[ord(c)] = i
        if self.vocab_size < 255:  # ids fit a byte with 255 left over to mark continuation bytes
            self._lut8 = self._lut.astype(np.uint8)
            table = bytearray(self._lut8[:128].tobytes()) + bytes([0xFF]) * 64 + bytes(64)
            # ASCII -> id, continuation -> 0xFF, lead byte -> 0 (set later)
            self._byte_table = bytes(table)

    @classmethod
    def fit(
        cls, counter: CharCounter, *, min_count: int = 1, max_vocab: int | None = None
    ) -> CharTokenizer:
        """Keep characters seen at least min_count times, the most frequent max_vocab - 1 of them
        (+ unknown)."""
        kept = [(count, cp) for cp, count in counter.counts.items() if count >= min_count]
        kept.sort(key=lambda pair: (-pair[0], pair[1]))
        if max_vocab is not None:
            kept = kept[: max(max_vocab - 1, 0)]  # one slot is the unknown character
        return cls(sorted(chr(cp) for _, cp in kept))

    def refitted(
        self, counts: np.ndarray, *, min_count: int = 1, max_vocab: int | None = None
    ) -> CharTokenizer:
        """The vocabulary fit() keeps from counts by id of this one (the training text's)."""
        points = np.array([ord(c) for c in self.chars], dtype=np.int64)
        by_point = np.zeros(int(points.max(initial=0)) + 1, dtype=np.int64)
        by_point[points] = counts[1 : len(points) + 1]
        counter = CharCounter()
        counter.add(by_point)
        return CharTokenizer.fit(counter, min_count=min_count, max_vocab=max_vocab)

    def ids_in(self, other: CharTokenizer, dtype: np.dtype) -> np.ndarray:
        """Each id of this vocabulary as an id of other (0, unknown, where other lacks it)."""
        return np.array([0, *(other._id_of.get(c, 0) for c in self.chars)], dtype=dtype)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> np.ndarray:
        """Token ids (int64) for text; characters outside the vocabulary become the unknown id."""
        return np.take(self._lut, code_points(text), mode="clip")

    def encode_utf8(self, data: bytes, dtype: np.dtype) -> np.ndarray:
        """Token ids of valid UTF-8 bytes, as dtype; fast (no decoding) for vocabularies < 255."""
        if self.vocab_size >= 255:
            return np.take(self._lut, code_points(data.decode("utf-8")), mode="clip").astype(dtype)
        if data.isascii():
            return np.frombuffer(data.translate(self._byte_table), np.uint8)
        array = np.frombuffer(data, np.uint8)
        lead, points = lead_code_points(array)
        ids = bytearray(data.translate(self._byte_table))
        np.frombuffer(ids, np.uint8)[lead] = np.take(self._lut8, points, mode="clip")
        return np.frombuffer(ids.translate(None, b"\xff"), np.uint8)

    def unknown_characters(self, text: str) -> int:
        """Characters of text outside the vocabulary (each one unknown token)."""
        return int(np.count_nonzero(self.encode(text) == UNKNOWN_ID))

    def decode(self, ids: Iterable[int]) -> str:
        chars, unknown = self.chars, self.unknown_text
        return "".join(chars[i - 1] if i > 0 else unknown for i in ids)

    def token_text(self, token_id: int) -> str:
        """The text of one token, for streaming output."""
        return self.chars[token_id - 1] if token_id > 0 else self.unknown_text

    def stream_decoder(self, context: Iterable[int] = ()) -> CharDecoder:
        """A decoder turning generated ids into text one by one (characters need no context)."""
        return CharDecoder(self.token_text)

    def unknown_words(self, text: str) -> list[str]:
        """The distinct characters of text that are not in the vocabulary."""
        return sorted(ch for ch in set(text) if self.encode(ch)[0] == UNKNOWN_ID)

    def save(self, path: str | Path) -> None:
        data = {
            "format": TOKENIZER_FORMAT,
            "kind": self.kind,
            "level": self.kind,
            "unknown_id": UNKNOWN_ID,
            "chars": self.chars,
        }
        Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


class CharDecoder:
    """Streaming decoder of the char level: each id is one character."""

    def __init__(self, token_text):
        self.feed = token_text

    def flush(self) -> str:
        return ""
