"""Tokenizers behind one small interface: fit, encode, decode, save, load, vocab_size.

Only the character level exists so far; id 0 is always the unknown token, which
stands for anything the training text did not contain and is never generated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import LstmgenError

TOKENIZER_FORMAT = 1
UNKNOWN_ID = 0


def code_points(text: str) -> np.ndarray:
    """The Unicode code points of text, as a uint32 array (no Python loop)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class CharCounter:
    """Counts characters over a stream of chunks, for fitting a CharTokenizer."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0

    def update(self, text: str) -> None:
        values, counts = np.unique(code_points(text), return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist()):
            self.counts[value] = self.counts.get(value, 0) + count
        self.total += len(text)


class CharTokenizer:
    """One token per Unicode code point seen in training; id 0 is the unknown character."""

    kind = "char"
    unknown_id = UNKNOWN_ID
    unknown_text = "\ufffd"

    def __init__(self, chars: Iterable[str]):
        self.chars: list[str] = list(chars)
        if len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise ValueError("chars must be distinct single characters")
        self._id_of = {c: i + 1 for i, c in enumerate(self.chars)}
        max_cp = max((ord(c) for c in self.chars), default=0)
        self._lut = np.zeros(max_cp + 1, dtype=np.int64)  # code point -> id, 0 = unknown
        for c, i in self._id_of.items():
            self._lut[ord(c)] = i

    @classmethod
    def fit(cls, counter: CharCounter, *, min_count: int = 1, max_vocab: int | None = None) -> CharTokenizer:
        """Keep characters seen at least min_count times, the most frequent max_vocab of them."""
        kept = [(count, cp) for cp, count in counter.counts.items() if count >= min_count]
        kept.sort(key=lambda pair: (-pair[0], pair[1]))
        if max_vocab is not None:
            kept = kept[: max(max_vocab - 1, 0)]  # one slot is the unknown character
        return cls(sorted(chr(cp) for _, cp in kept))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> np.ndarray:
        """Token ids (int64) for text; characters outside the vocabulary become the unknown id."""
        cps = code_points(text)
        ids = np.zeros(len(cps), dtype=np.int64)
        inside = cps < len(self._lut)
        ids[inside] = self._lut[cps[inside]]
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        chars, unknown = self.chars, self.unknown_text
        return "".join(chars[i - 1] if i > 0 else unknown for i in ids)

    def token_text(self, token_id: int) -> str:
        """The text of one token, for streaming output."""
        return self.chars[token_id - 1] if token_id > 0 else self.unknown_text

    def save(self, path: str | Path) -> None:
        data = {"format": TOKENIZER_FORMAT, "kind": self.kind, "unknown_id": UNKNOWN_ID, "chars": self.chars}
        Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        return load_tokenizer(path)  # type: ignore[return-value]


def load_tokenizer(path: str | Path) -> CharTokenizer:
    """Read a tokenizer.json written by save(); a damaged or unknown file is a clear error."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LstmgenError(f"{path} is missing; the run directory is incomplete") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LstmgenError(f"{path} is damaged (not valid JSON); restore it or retrain") from None
    if data.get("format", 0) > TOKENIZER_FORMAT:
        raise LstmgenError(f"{path} was written by a newer lstmgen (format {data['format']}); upgrade lstmgen to read it")
    if data.get("kind") != "char":
        raise LstmgenError(f"{path} holds a {data.get('kind')!r} tokenizer, which this lstmgen cannot read; upgrade lstmgen")
    return CharTokenizer(data["chars"])
