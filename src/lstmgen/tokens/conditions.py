"""Conditions: a reserved control token per value of a table column (a rating, an author),
put before each document, so that generation can ask for one kind of text.

A control token travels through preparation as one reserved character (Supplementary
Private Use Area-B, U+100000 up, removed from the text of conditioned documents), so every
level counts, splits and encodes it as it does text; ConditionedTokenizer then keeps it from
being generated, printed or counted as a character. No PyTorch here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from lstmgen.errors import LstmgenError

FIRST_MARK = 0x100000  # U+100000: the first reserved character; value i is FIRST_MARK + i
RESERVED = re.compile("[\U00100000-\U0010ffff]")
OTHER = "<other>"  # the token of values seen fewer than --min-condition-count times


def strip_reserved(text: str) -> str:
    """Text without the characters control tokens are made of (they are never text)."""
    return text if text.isascii() else RESERVED.sub("", text)


@dataclass(frozen=True)
class Conditions:
    """The values a run was conditioned on, their documents, and what primes a condition."""

    values: tuple[str, ...]  # value i has the control character chr(FIRST_MARK + i)
    documents: dict[str, int] = field(default_factory=dict)  # kept documents per value
    column: str = ""  # the column (or field) the values came from
    separator: str = "\n\n"  # what comes before a control token in training

    @classmethod
    def from_counts(
        cls, counts: Mapping[str, int], *, min_count: int, column: str, separator: str
    ) -> Conditions:
        """Values with at least min_count documents get a token; the rest share OTHER."""
        kept = sorted(v for v, n in counts.items() if n >= min_count and v and v != OTHER)
        documents = {v: counts[v] for v in kept}
        rest = sum(n for v, n in counts.items() if v not in documents)
        if rest:
            kept.append(OTHER)
            documents[OTHER] = rest
        return cls(tuple(kept), documents, column, separator)

    def mark(self, value: str) -> str:
        """The control character of a value as read from the table (OTHER for a rare one)."""
        index = self._index.get(value)
        if index is None:
            index = self._index[OTHER]
        return chr(FIRST_MARK + index)

    @property
    def marks(self) -> list[str]:
        return [chr(FIRST_MARK + i) for i in range(len(self.values))]

    @cached_property
    def _index(self) -> dict[str, int]:
        return {v: i for i, v in enumerate(self.values)}

    def to_json(self) -> dict:
        return {
            "column": self.column,
            "values": list(self.values),
            "documents": self.documents,
            "separator": self.separator,
        }

    @classmethod
    def from_json(cls, data: dict) -> Conditions:
        return cls(
            tuple(data["values"]),
            dict(data.get("documents", {})),
            data.get("column", ""),
            data.get("separator", "\n\n"),
        )


class ConditionedTokenizer:
    """A tokenizer whose vocabulary holds control tokens: it never generates or prints them.

    Everything else is the inner tokenizer's (char, word or bpe), whose ids it keeps.
    """

    def __init__(self, inner, conditions: Conditions):
        self.inner, self.conditions = inner, conditions
        self.control_ids: dict[str, int] = {}
        for value, mark in zip(conditions.values, conditions.marks, strict=True):
            ids = inner.encode(mark)
            if len(ids) != 1 or int(ids[0]) == inner.unknown_id:
                raise LstmgenError(f"the vocabulary lacks the control token of {value!r}")
            self.control_ids[value] = int(ids[0])
        self.is_control = frozenset(self.control_ids.values())
        self.never_generated = sorted({*inner.never_generated, *self.is_control})

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def control_id(self, value: str) -> int:
        """The control token of a condition; an unknown value is a one-line error."""
        if value not in self.control_ids:
            known = ", ".join(repr(v) for v in self.conditions.values)
            raise LstmgenError(f"unknown condition {value!r}; this model knows: {known}")
        return self.control_ids[value]

    def encode(self, text: str):
        return self.inner.encode(strip_reserved(text))

    def token_text(self, token_id: int) -> str:
        return "" if token_id in self.is_control else self.inner.token_text(token_id)

    def decode(self, ids: Iterable[int]) -> str:
        return self.inner.decode(i for i in ids if int(i) not in self.is_control)

    def stream_decoder(self, context: Iterable[int] = ()):
        return _SkipControls(self.inner.stream_decoder(context), self.is_control)

    def save(self, path: str | Path) -> None:
        self.inner.save(path)
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        data["conditions"] = self.conditions.to_json()
        Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


class _SkipControls:
    """A stream decoder that prints nothing for control tokens."""

    def __init__(self, decoder, controls: frozenset):
        self.decoder, self.controls = decoder, controls

    def feed(self, token_id: int) -> str:
        return "" if token_id in self.controls else self.decoder.feed(token_id)

    def flush(self) -> str:
        return self.decoder.flush()


def conditions_of(tokenizer) -> Conditions | None:
    """The conditions a tokenizer's run was trained on, or None."""
    return getattr(tokenizer, "conditions", None)
