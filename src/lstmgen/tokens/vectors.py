"""Pretrained word vectors (GloVe text, word2vec text and binary) as a word model's first
embeddings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmgen.errors import LstmgenError

HEADER = re.compile(rb"^\s*(\d+)\s+(\d+)\s*$")  # word2vec: "<count> <dimensions>"


@dataclass
class Vectors:
    """Vectors found for some of a vocabulary's words (by token id)."""

    dimensions: int
    found: dict[int, np.ndarray]

    def matrix(self, vocab_size: int, *, seed: int = 0, std: float = 0.1) -> np.ndarray:
        """(V, D) float32: the found vectors, a small random init for the rest."""
        out = (
            np.random.default_rng(seed)
            .normal(0.0, std, (vocab_size, self.dimensions))
            .astype(np.float32)
        )
        for token_id, vector in self.found.items():
            out[token_id] = vector
        return out

    def coverage(self, vocab_size: int, token_counts: np.ndarray) -> tuple[float, float]:
        """Shares of the vocabulary (unknown token aside) and of the training tokens that got a
        vector."""
        ids = np.fromiter(self.found, dtype=np.int64, count=len(self.found))
        tokens = float(token_counts[ids].sum() / max(token_counts.sum(), 1))
        return len(ids) / max(vocab_size - 1, 1), tokens


def read_vectors(path: str | Path, words: list[str]) -> Vectors:
    """Vectors for `words` (token id i + 1 is words[i]) from a GloVe or word2vec file; exact
    match, then lower-case. A token's leading space is not its word's: " the" is "the"."""
    path = Path(path)
    if not path.is_file():
        raise LstmgenError(
            f"--embeddings {path} does not exist; give a GloVe or word2vec vector file"
        )
    words = [w[1:] if len(w) > 1 and w[0] == " " else w for w in words]
    wanted: dict[str, int] = {}
    for token_id, word in enumerate(words, start=1):
        wanted.setdefault(word, token_id)
    for token_id, word in enumerate(words, start=1):
        wanted.setdefault(word.lower(), token_id)  # the exact form wins over a lower-cased one
    with open(path, "rb") as f:
        first = f.readline()
        header = HEADER.match(first)
        if header and _binary_follows(f, int(header.group(2))):
            vectors = _read_binary(f, path, int(header.group(1)), int(header.group(2)), wanted)
        else:
            f.seek(0 if not header else len(first))
            vectors = _read_text(f, path, wanted, first_line=2 if header else 1)
    for token_id, word in enumerate(words, start=1):  # "the" and " the" share one vector
        first = wanted[word]
        if first != token_id and first in vectors.found:
            vectors.found[token_id] = vectors.found[first]
    if not vectors.found:
        raise LstmgenError(
            f"--embeddings {path} covers none of the {len(words):,} vocabulary words; "
            "is it a vector file for this language?"
        )
    return vectors


def _binary_follows(f, dimensions: int) -> bool:
    """Whether the line after a word2vec header is binary (not 'word v1 ... vD' text)."""
    start = f.tell()
    line = f.readline(1 << 20)
    f.seek(start)
    try:
        fields = line.decode("utf-8").split()
        [float(x) for x in fields[1:]]
    except (UnicodeDecodeError, ValueError):
        return True
    return len(fields) != dimensions + 1


def _read_text(f, path: Path, wanted: dict[str, int], *, first_line: int) -> Vectors:
    dimensions, found = None, {}
    for number, raw in enumerate(f, start=first_line):
        fields = raw.rstrip(b"\r\n").split(b" ")
        while fields and not fields[-1]:
            fields.pop()  # some files end lines with a space
        if not fields or fields == [b""]:
            continue
        size = len(fields) - 1
        if size < 1:
            raise LstmgenError(
                f"--embeddings {path} line {number} is malformed: expected a word and its numbers"
            )
        if dimensions is None:
            dimensions = size
        elif size != dimensions:
            raise LstmgenError(
                f"--embeddings {path} line {number} has {size} numbers "
                f"but the lines before it have {dimensions}; mixed dimensions"
            )
        word = fields[0].decode("utf-8", errors="replace")
        token_id = wanted.get(word, wanted.get(word.lower()))
        if token_id is None or (token_id in found and word not in wanted):
            continue
        try:
            found[token_id] = np.array([float(x) for x in fields[1:]], dtype=np.float32)
        except ValueError:
            raise LstmgenError(
                f"--embeddings {path} line {number} is malformed: "
                f"not all of its {size} values are numbers"
            ) from None
    if dimensions is None:
        raise LstmgenError(f"--embeddings {path} holds no vectors")
    return Vectors(dimensions, found)


def _read_binary(f, path: Path, count: int, dimensions: int, wanted: dict[str, int]) -> Vectors:
    found, width = {}, 4 * dimensions
    for number in range(1, count + 1):
        word = bytearray()
        while (byte := f.read(1)) != b" ":
            if not byte:
                raise LstmgenError(
                    f"--embeddings {path} is cut short: "
                    f"its header promises {count:,} vectors, it has {number - 1:,}"
                )
            if byte != b"\n" or word:  # a newline may end the previous vector
                word += byte
        data = f.read(width)
        if len(data) != width:
            raise LstmgenError(
                f"--embeddings {path} is cut short in vector {number:,} "
                f"(of {dimensions} float32 values)"
            )
        text = word.decode("utf-8", errors="replace")
        token_id = wanted.get(text, wanted.get(text.lower()))
        if token_id is not None and not (token_id in found and text not in wanted):
            found[token_id] = np.frombuffer(data, dtype="<f4").copy()
    return Vectors(dimensions, found)
