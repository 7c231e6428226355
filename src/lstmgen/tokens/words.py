"""Word-level tokenizer, lossless: a word, number or punctuation run carries the single space
before it (" the" is a token, like GPT-2's Ġ), and other whitespace (newlines, tabs, runs of
spaces) makes tokens of its own. Decoding is concatenation: decode(encode(text)) == text
wherever the text's tokens are in the vocabulary, so every held-out character is paid for.

The first word format (tokenizer.json "format": 1) dropped whitespace and guessed spacing
back when decoding; such a file still loads, as a Format1WordTokenizer that encodes and
decodes as it did, so older word runs keep generating the same way.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

WORD_FORMAT = 2
UNKNOWN_ID = 0
UNKNOWN_TEXT = "<unk>"
SPACE = " "
# A word (with inner apostrophes, hyphens or dots: don't, o'er, well-known, www.example.org),
# a number with inner separators (3.14, 1,000) or a run of one punctuation mark (..., --, !!),
# each with the one space before it; each newline; other whitespace, whose last space is left
# to the word after it (so "a  b" is "a", " ", " b": the word keeps its usual token).
TOKEN_PATTERN = re.compile(
    r" ?(?:\d+(?:[.,:]\d+)+|\w+(?:['’.\-]\w+)*|([^\w\s])\1*)|\n|[^\S\n]+(?!\S)|[^\S\n]+"
)
WORD_START = re.compile(r"\w")


def split_words(text: str) -> list[str]:
    """The word-level tokens of text; joined, they are the text."""
    return [m.group() for m in TOKEN_PATTERN.finditer(text)]


class WordCounter:
    """Counts word tokens over a stream of texts, for fitting a WordTokenizer."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def update(self, text: str) -> None:
        """Count the tokens of text."""
        self.counts.update(split_words(text))


class ConcatDecoder:
    """Streams tokens back to text: each token is its own text, whatever came before."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = tokens

    def feed(self, token_id: int) -> str:
        return self.tokens[token_id]

    def flush(self) -> str:
        return ""


class WordTokenizer:
    """One token per word (with the space before it), punctuation run, newline or other
    whitespace of the vocabulary; id 0 is the unknown token, decoded as "<unk>"."""

    kind = "word"
    format = WORD_FORMAT
    unknown_id = UNKNOWN_ID
    never_generated = (UNKNOWN_ID,)
    unknown_text = UNKNOWN_TEXT

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
        """Keep tokens seen at least min_count times, the most frequent max_vocab - 1 of them
        (+ unknown)."""
        counts = dict(counter.counts)
        # A lone space spells the space of any unknown word after one (" zebra" is " " + <unk>):
        # it ranks by all the spaces it may stand for, so it is kept whenever spaces occur.
        carried = sum(c for w, c in counts.items() if len(w) > 1 and w[0] == SPACE)
        if carried:
            counts[SPACE] = counts.get(SPACE, 0) + carried
        kept = sorted(
            ((c, w) for w, c in counts.items() if c >= min_count),
            key=lambda p: (-p[0], p[1]),
        )
        return cls(w for _, w in kept[: max(max_vocab - 1, 0)])

    @property
    def vocab_size(self) -> int:
        return len(self.words) + 1

    def split(self, text: str) -> list[str]:
        """The tokens of text, in or out of the vocabulary."""
        return split_words(text)

    def spell(self, token: str) -> list[str]:
        """The vocabulary pieces a token outside it is written with: its space apart, then a
        word whole (unknown unless known without the space), other runs character by character."""
        pieces = []
        if len(token) > 1 and token[0] == SPACE:
            pieces.append(SPACE)
            token = token[1:]
        if WORD_START.match(token):
            pieces.append(token)
        else:  # a punctuation or whitespace run: "!!!!" is "!" four times
            pieces.extend(token)
        return pieces

    def _pieces(self, text: str) -> list[str]:
        known = self._id_of
        pieces = []
        for token in self.split(text):
            if token in known:
                pieces.append(token)
            else:
                pieces.extend(self.spell(token))
        return pieces

    def encode(self, text: str) -> np.ndarray:
        """Token ids (int64) for text; what is outside the vocabulary becomes the unknown id."""
        get = self._id_of.get
        return np.array([get(p, UNKNOWN_ID) for p in self._pieces(text)], dtype=np.int64)

    def unknown_words(self, text: str) -> list[str]:
        """The distinct words of text that are not in the vocabulary, in order of appearance."""
        return list(dict.fromkeys(p for p in self._pieces(text) if p not in self._id_of))

    def unknown_characters(self, text: str) -> int:
        """Characters of text in unknown tokens (whose spelling no bit pays for)."""
        return sum(len(p) for p in self._pieces(text) if p not in self._id_of)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids: their texts joined ("<unk>" for each unknown one)."""
        tokens = self.tokens
        return "".join(tokens[int(i)] for i in ids)

    def stream_decoder(self, context: Iterable[int] = ()) -> ConcatDecoder:
        """A decoder for generated ids; each token carries its own spacing, so no context."""
        return ConcatDecoder(self.tokens)

    def token_text(self, token_id: int) -> str:
        return self.tokens[token_id]

    def save(self, path: str | Path) -> None:
        data = {
            "format": self.format,
            "kind": self.kind,
            "level": self.kind,
            "unknown_id": UNKNOWN_ID,
            "words": self.words,
        }
        Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def from_saved(cls, data: dict) -> WordTokenizer:
        """The tokenizer a tokenizer.json holds: format 1 (spacing guessed back) or 2."""
        if data.get("format", 1) < WORD_FORMAT:
            return Format1WordTokenizer(data["words"])
        return WordTokenizer(data["words"])


# Format 1: whitespace other than newlines only separated tokens; a detokenizer put it back.
FORMAT1_PATTERN = re.compile(r"\n|\d+(?:[.,:]\d+)+|\w+(?:['’.\-]\w+)*|([^\w\s])\1*")
NO_SPACE_BEFORE = set(".,;:!?'’”)]}%")
NO_SPACE_AFTER = set("([{“‘")
DASHES = ("--", "—")  # joined to the words on both sides, as most books print them


class Format1WordTokenizer(WordTokenizer):
    """A word tokenizer saved in format 1: its runs encode and generate as they did."""

    format = 1

    def split(self, text: str) -> list[str]:
        """The tokens of text; whitespace other than newlines is dropped."""
        return [m.group() for m in FORMAT1_PATTERN.finditer(text)]

    def spell(self, token: str) -> list[str]:
        """A token outside the vocabulary is one unknown token."""
        return [token]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids, spaced by the detokenizer."""
        decoder = self.stream_decoder()
        return "".join(decoder.feed(int(i)) for i in ids)

    def stream_decoder(self, context: Iterable[int] = ()) -> Format1Decoder:
        """A decoder for text generated after the tokens `context` (spacing depends on what came
        before)."""
        return Format1Decoder(self.tokens, context)


class Format1Decoder:
    """Streams format-1 tokens back to text, deciding the space before each from the one before."""

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
