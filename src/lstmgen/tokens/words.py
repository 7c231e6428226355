"""Word-level tokenizer: words, numbers, punctuation and newlines as tokens, and a detokenizer
that turns them back into natural text (no space before '.', ',', '!', ...; one after).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

UNKNOWN_ID = 0
# Newlines (so verse and paragraphs survive), numbers with inner separators (3.14, 1,000),
# words with inner apostrophes, hyphens or dots (don't, o'er, well-known, www.example.org),
# runs of one punctuation mark (..., --, !!). Other whitespace only separates tokens.
TOKEN_PATTERN = re.compile(r"\n|\d+(?:[.,:]\d+)+|\w+(?:['’.\-]\w+)*|([^\w\s])\1*")
NO_SPACE_BEFORE = set(".,;:!?'’”)]}%")
NO_SPACE_AFTER = set("([{“‘")
DASHES = ("--", "—")  # joined to the words on both sides, as most books print them


def split_words(text: str) -> list[str]:
    """The word-level tokens of text."""
    return [m.group() for m in TOKEN_PATTERN.finditer(text)]


class WordCounter:
    """Counts word tokens over a stream of texts, for fitting a WordTokenizer."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def update(self, text: str) -> None:
        self.counts.update(split_words(text))


class WordDecoder:
    """Streams tokens back to text, deciding the space before each token from the one before it."""

    def __init__(self, tokens: Sequence[str], context: Iterable[int] = ()):
        self.tokens = tokens
        self.previous: str | None = None
        self.quote_open = False
        for token_id in context:  # the prime: sets the state, prints nothing
            self.feed(int(token_id))

    def feed(self, token_id: int) -> str:
        token = self.tokens[token_id]
        space = self._space_before(token)
        if token == '"':
            self.quote_open = not self.quote_open
        self.previous = token
        return " " + token if space else token

    def _space_before(self, token: str) -> bool:
        previous = self.previous
        if previous is None or previous == "\n" or token == "\n" or previous[-1] in NO_SPACE_AFTER:
            return False
        if token.startswith(DASHES) or previous.startswith(DASHES):
            return False
        if token == '"':
            return not self.quote_open  # an opening quote gets a space, a closing one none
        if previous == '"' and self.quote_open:
            return False  # just after an opening quote
        return token[0] not in NO_SPACE_BEFORE

    def flush(self) -> str:
        return ""


class WordTokenizer:
    """One token per word, number, punctuation run or newline of the vocabulary; id 0 is the
    unknown word."""

    kind = "word"
    unknown_id = UNKNOWN_ID
    never_generated = (UNKNOWN_ID,)
    unknown_text = "<unk>"

    def __init__(self, words: Iterable[str]):
        self.words: list[str] = list(words)
        self.tokens = [self.unknown_text, *self.words]  # by id
        self._id_of = {w: i + 1 for i, w in enumerate(self.words)}
        if len(self._id_of) != len(self.words):
            raise ValueError("words must be distinct")

    @classmethod
    def fit(
        cls, counter: WordCounter, *, min_count: int = 1, max_vocab: int = 20_000
    ) -> WordTokenizer:
        """Keep words seen at least min_count times, the most frequent max_vocab - 1 of them
        (+ unknown)."""
        kept = sorted(
            ((c, w) for w, c in counter.counts.items() if c >= min_count),
            key=lambda p: (-p[0], p[1]),
        )
        return cls(w for _, w in kept[: max(max_vocab - 1, 0)])

    @property
    def vocab_size(self) -> int:
        return len(self.words) + 1

    def encode(self, text: str) -> np.ndarray:
        """Token ids (int64) for text; words outside the vocabulary become the unknown id."""
        get = self._id_of.get
        return np.array([get(w, UNKNOWN_ID) for w in split_words(text)], dtype=np.int64)

    def unknown_words(self, text: str) -> list[str]:
        """The distinct words of text that are not in the vocabulary, in order of appearance."""
        return list(dict.fromkeys(w for w in split_words(text) if w not in self._id_of))

    def unknown_characters(self, text: str) -> int:
        """Characters of text in words outside the vocabulary (whose spelling no bit pays for)."""
        return sum(len(w) for w in split_words(text) if w not in self._id_of)

    def decode(self, ids: Iterable[int]) -> str:
        decoder = self.stream_decoder()
        return "".join(decoder.feed(int(i)) for i in ids)

    def stream_decoder(self, context: Iterable[int] = ()) -> WordDecoder:
        """A decoder for text generated after the tokens `context` (spacing depends on what came
        before)."""
        return WordDecoder(self.tokens, context)

    def token_text(self, token_id: int) -> str:
        return self.tokens[token_id]

    def save(self, path: str | Path) -> None:
        data = {
            "format": 1,
            "kind": self.kind,
            "level": self.kind,
            "unknown_id": UNKNOWN_ID,
            "words": self.words,
        }
        Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
