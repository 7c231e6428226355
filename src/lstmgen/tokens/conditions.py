"""Conditions: each document's value of one or more table columns (a rating, an author).

The model is given a document's conditions at **every** input position, as learned embeddings
joined to the token's (Lipton, Vikram & McAuley 2015); this module holds what the vocabulary
side needs. Each column's values are numbered (rare ones share `<other>`); `Conditions` maps
values read from a table, or asked for by a user, to those numbers.

In a conditioned store every document starts with one reserved mark (U+100000, removed from
the text), the same for every value: it tells the store where each document begins, so each
token can be given its document's conditions (store.py), and it starts a generated document.
ConditionedTokenizer keeps the mark from being generated, printed or counted as a character.
No PyTorch here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from lstmgen.errors import LstmgenError

DOCUMENT_MARK = "\U00100000"  # before every document of a conditioned store; never text
RESERVED = re.compile("[\U00100000-\U0010ffff]")
OTHER = "<other>"  # the value of values seen fewer than --min-condition-count times


def strip_reserved(text: str) -> str:
    """Text without the reserved characters marks are made of (they are never text)."""
    return text if text.isascii() else RESERVED.sub("", text)


@dataclass(frozen=True)
class Column:
    """One condition column: its values (value i has embedding row i) and their documents."""

    name: str
    values: tuple[str, ...]
    documents: dict[str, int] = field(default_factory=dict)  # training documents per value

    @classmethod
    def from_counts(cls, name: str, counts: Mapping[str, int], *, min_count: int) -> Column:
        """Values with at least min_count documents are their own; the rest share OTHER."""
        kept = sorted(v for v, n in counts.items() if n >= min_count and v and v != OTHER)
        documents = {v: counts[v] for v in kept}
        rest = sum(n for v, n in counts.items() if v not in documents)
        if rest:
            kept.append(OTHER)
            documents[OTHER] = rest
        return cls(name, tuple(kept), documents)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {v: i for i, v in enumerate(self.values)}

    def of_document(self, value: str) -> int:
        """The number of a value read from a document: a rare or missing one is OTHER's."""
        index = self._index.get(value, self._index.get(OTHER))
        if index is None:
            raise LstmgenError(
                f"a document has {self.name} {value!r}, which the model does not know and it "
                f"has no {OTHER} value; it knows: {self.known}"
            )
        return index

    def asked(self, value: str) -> int:
        """The number of a value a user asked for; an unknown one is a one-line error."""
        if value not in self._index:
            raise LstmgenError(
                f"unknown condition {self.name}={value!r}; this model knows: {self.known}"
            )
        return self._index[value]

    @property
    def known(self) -> str:
        return ", ".join(repr(v) for v in self.values)

    @property
    def prior(self) -> list[float]:
        """Each value's share of the training documents (Bayes' rule's prior in classify)."""
        counts = [max(self.documents.get(v, 0), 0) for v in self.values]
        total = sum(counts)
        return [c / total if total else 1 / len(counts) for c in counts]


@dataclass(frozen=True)
class Conditions:
    """The condition columns a run was trained on, and the separator before each document."""

    columns: tuple[Column, ...]
    separator: str = "\n\n"  # what comes before a document's mark in training

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Values per column: the rows of each condition embedding."""
        return tuple(len(c.values) for c in self.columns)

    def of_document(self, labels: Sequence[str]) -> tuple[int, ...]:
        """The numbers of a document's values as read from its row (one per column)."""
        return tuple(c.of_document(v) for c, v in zip(self.columns, labels, strict=True))

    def column(self, name: str | None) -> int:
        """The position of a column by name (None: the only one, or the first)."""
        if name is None:
            return 0
        if name not in self.names:
            raise LstmgenError(
                f"unknown condition column {name!r}; this model's: {', '.join(self.names)}"
            )
        return self.names.index(name)

    def asked(self, asked: str | Sequence[str] | Mapping[str, str] | None) -> dict[int, int]:
        """What a user asked for, as {column position: value number}.

        Accepts {"Score": "5"}, ["Score=5", "Type=x"], or a bare value ("5") when the run has
        one column. Columns not named are left out (the caller draws them from the prior).
        """
        if not asked:
            return {}
        if isinstance(asked, Mapping):
            pairs = [(str(k), str(v)) for k, v in asked.items()]
        else:
            pairs = [self._pair(text) for text in ([asked] if isinstance(asked, str) else asked)]
        chosen: dict[int, int] = {}
        for name, value in pairs:
            position = self.column(name)
            if position in chosen:
                raise LstmgenError(f"the condition {self.names[position]} is given twice")
            chosen[position] = self.columns[position].asked(value)
        return chosen

    def _pair(self, text: str) -> tuple[str, str]:
        """'Score=5' → ('Score', '5'); a bare '5' names the only column."""
        name, sep, value = str(text).partition("=")
        if sep and name in self.names:
            return name, value
        if len(self.columns) == 1:
            return self.names[0], str(text)
        raise LstmgenError(
            f"--condition {text!r} must name its column as COLUMN=VALUE; this model has "
            f"{', '.join(self.names)}"
        )

    def to_json(self) -> dict:
        return {
            "columns": [
                {"column": c.name, "values": list(c.values), "documents": c.documents}
                for c in self.columns
            ],
            "separator": self.separator,
        }

    @classmethod
    def from_json(cls, data: dict) -> Conditions:
        if "columns" not in data:
            raise LstmgenError(
                "this run was conditioned by an earlier lstmgen (one control token per "
                "document, which did not steer the text); prepare and train it again"
            )
        columns = tuple(
            Column(c["column"], tuple(c["values"]), dict(c.get("documents", {})))
            for c in data["columns"]
        )
        return cls(columns, data.get("separator", "\n\n"))


class ConditionedTokenizer:
    """A tokenizer whose vocabulary holds the document mark: never generated or printed.

    Everything else is the inner tokenizer's (char, word or bpe), whose ids it keeps.
    """

    def __init__(self, inner, conditions: Conditions):
        self.inner, self.conditions = inner, conditions
        ids = inner.encode(DOCUMENT_MARK)
        if len(ids) != 1 or int(ids[0]) == inner.unknown_id:
            raise LstmgenError("the vocabulary lacks the document mark of a conditioned run")
        self.document_id = int(ids[0])
        self.is_control = frozenset([self.document_id])
        self.never_generated = sorted({*inner.never_generated, self.document_id})

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def encode(self, text: str):
        return self.inner.encode(strip_reserved(text))

    def token_text(self, token_id: int) -> str:
        return "" if token_id == self.document_id else self.inner.token_text(token_id)

    def decode(self, ids: Iterable[int]) -> str:
        return self.inner.decode(i for i in ids if int(i) != self.document_id)

    def stream_decoder(self, context: Iterable[int] = ()):
        return _SkipControls(self.inner.stream_decoder(context), self.is_control)

    def save(self, path: str | Path) -> None:
        self.inner.save(path)
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        data["conditions"] = self.conditions.to_json()
        Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


class _SkipControls:
    """A stream decoder that prints nothing for the document mark."""

    def __init__(self, decoder, controls: frozenset):
        self.decoder, self.controls = decoder, controls

    def feed(self, token_id: int) -> str:
        return "" if token_id in self.controls else self.decoder.feed(token_id)

    def flush(self) -> str:
        return self.decoder.flush()


def conditions_of(tokenizer) -> Conditions | None:
    """The conditions a tokenizer's run was trained on, or None."""
    return getattr(tokenizer, "conditions", None)
