"""The copy guard (--max-copy N): no sample holds a span of more than N characters that
stands in the training text.

Each sample keeps the tail of its generated text (the prime is the user's and does not count)
and L, the length in characters of its longest suffix found in the training text (the
suffix-array searches of textindex.py). Before each draw, a token is removed (its logit -inf)
when appending its characters one by one would at some point give an (N+1)-character suffix
found there: with q characters of the tail and the token's first k = N+1-q, that is the tail's
q-character suffix followed by those k characters, so for each q from L down to N+1 minus the
longest token, one search gives the interval of the tail's suffix and its rows give the
characters that follow (or, where it occurs very often, each long enough token is searched).
While L is below that bound nothing can be removed, and a step costs at most one search.

Characters are counted by their first UTF-8 byte, so a BPE token that ends inside a character
counts it whole (the guard may remove a little more than it must, never less).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstmgen.data.novelty import training_indexes
from lstmgen.data.textindex import TextIndex, token_pieces
from lstmgen.errors import LstmgenError

ROW_LIMIT = 1024  # an interval with more rows (and 4x the tokens) is checked token by token


def _leads(piece: bytes) -> list[int]:
    """Byte offsets of the characters that start in piece."""
    return [i for i, b in enumerate(piece) if b & 0xC0 != 0x80]


class CopyGuard:
    """The tables of one guard: the indexes, N, and each token's bytes and characters."""

    def __init__(self, indexes: Sequence[TextIndex], pieces: list[bytes], max_copy: int):
        self.indexes, self.max_copy = list(indexes), max_copy
        self.pieces = pieces
        self.leads = [_leads(p) for p in pieces]
        self.chars = np.array([len(lead) for lead in self.leads], np.int64)
        self.char_count = self.chars.tolist()  # the same as Python ints: read at every step
        self.longest = int(self.chars.max()) if len(self.chars) else 0
        # the least q (tail characters) that can take part in an (N+1)-character window
        self.lowest = max(max_copy + 1 - self.longest, 1)
        self.keep_chars = max_copy + self.longest + 1
        self._prefixes: dict[int, tuple[dict[bytes, list[int]], int, np.ndarray]] = {}
        # a token longer than N may hold a window on its own
        self.always = np.array(
            [i for i in np.flatnonzero(self.chars > max_copy) if self._holds_copy(int(i))],
            np.int64,
        )

    def occurs(self, pattern: bytes) -> bool:
        if len(self.indexes) == 1:  # the usual case, at every step: no generator
            return self.indexes[0].occurs(pattern)
        return any(index.occurs(pattern) for index in self.indexes)

    def _holds_copy(self, token: int) -> bool:
        piece, leads = self.pieces[token], [*self.leads[token], len(self.pieces[token])]
        n = self.max_copy + 1
        return any(self.occurs(piece[leads[i] : leads[i + n]]) for i in range(len(leads) - n))

    def prefixes(self, k: int) -> tuple[dict[bytes, list[int]], int, np.ndarray]:
        """Tokens of at least k characters: {their first k characters' bytes: ids}, the most
        bytes such a prefix has, and the ids."""
        if k not in self._prefixes:
            table: dict[bytes, list[int]] = {}
            for token in np.flatnonzero(self.chars >= k).tolist():
                leads, piece = self.leads[token], self.pieces[token]
                end = leads[k] if k < len(leads) else len(piece)
                table.setdefault(piece[:end], []).append(token)
            width = max((len(p) for p in table), default=0)
            self._prefixes[k] = (table, width, np.flatnonzero(self.chars >= k))
        return self._prefixes[k]

    def start(self) -> CopyState:
        return CopyState(self)


def guard_for_run(run_dir, tokenizer, max_copy: int, *, allow_large: bool = False) -> CopyGuard:
    """The guard of a run: its training text's index (built when missing) and its base's."""
    pieces = token_pieces(tokenizer)
    if pieces is None:
        raise LstmgenError(
            "--max-copy needs a word run of the current format (this run's spacing is "
            "guessed when decoding); train it again with this lstmgen"
        )
    return CopyGuard(training_indexes(run_dir, allow_large=allow_large), pieces, max_copy)


class CopyState:
    """One sample's match with the training text."""

    def __init__(self, guard: CopyGuard):
        self.guard = guard
        self.tail = b""
        self.starts: list[int] = []  # where each character of the tail starts
        self.matched = -1  # L when it is at least guard.lowest; -1: below it

    def _suffix(self, chars: int) -> bytes:
        return self.tail[self.starts[-chars] :]

    def banned(self) -> np.ndarray | None:
        """The tokens that would make a copy longer than N (None: none)."""
        guard = self.guard
        if self.matched < guard.lowest and not len(guard.always):  # most steps: nothing to do
            return None
        found = [guard.always] if len(guard.always) else []
        for q in range(self.matched, guard.lowest - 1, -1):
            found.append(self._banned_at(q))
        found = [f for f in found if len(f)]
        return np.unique(np.concatenate(found)) if found else None

    def _banned_at(self, q: int) -> np.ndarray:
        guard = self.guard
        k = guard.max_copy + 1 - q
        table, width, ids = guard.prefixes(k)
        if not len(ids):
            return ids
        suffix = self._suffix(q)
        hits: list[int] = []
        for index in guard.indexes:
            left, count = index.find(suffix)
            if count > ROW_LIMIT and count > 4 * len(table):  # common: ask about each token
                hits += [t for p, ts in table.items() if index.occurs(suffix + p) for t in ts]
                continue
            rows = np.unique(index.following(left, count, len(suffix), width), axis=0)
            chars = np.cumsum((rows & 0xC0) != 0x80, axis=1)  # characters begun by each byte
            # a prefix of e bytes holding exactly k characters may be a token's
            for row, last in zip(*np.nonzero(chars == k), strict=True):
                hits += table.get(rows[row, : last + 1].tobytes(), ())
        return np.array(hits, np.int64)

    def advance(self, token: int) -> None:
        """Take the drawn token's characters and find the new L."""
        guard = self.guard
        piece = guard.pieces[token]
        if not piece:
            return
        base = len(self.tail)
        leads = guard.leads[token]
        if leads == [0]:  # one character (every char-level token)
            self.starts.append(base)
        else:
            self.starts += [base + i for i in leads]
        self.tail += piece
        if len(self.starts) > 2 * guard.keep_chars:  # keep the last keep_chars characters
            cut = self.starts[-guard.keep_chars]
            self.tail = self.tail[cut:]
            self.starts = [s - cut for s in self.starts[-guard.keep_chars :]]
        bound = self.matched if self.matched >= 0 else guard.lowest - 1
        upper = min(bound + guard.char_count[token], guard.max_copy, len(self.starts))
        if upper < guard.lowest or not guard.occurs(self._suffix(guard.lowest)):
            self.matched = -1
            return
        low = guard.lowest  # the longest suffix found: between low (found) and upper
        while low < upper:
            mid = (low + upper + 1) // 2
            if guard.occurs(self._suffix(mid)):
                low = mid
            else:
                upper = mid - 1
        self.matched = low


def copy_banned(
    copies: list, row_banned: np.ndarray | None, banned: np.ndarray, shape: tuple
) -> tuple[np.ndarray | None, np.ndarray]:
    """row_banned (B, V) with the tokens each row's copy guard removes (copies: a CopyState per
    row, or None for a row without a guard); and the rows left with no token at all (their
    guard's bans are lifted so the draw stays defined: they end)."""
    exhausted = np.zeros(len(copies), dtype=bool)
    for row, copies_of_row in enumerate(copies):
        ids = None if copies_of_row is None else copies_of_row.banned()
        if ids is None:
            continue
        if row_banned is None:
            row_banned = np.zeros(shape, dtype=bool)
        elif not row_banned.flags.writeable or row_banned.base is not None:
            row_banned = row_banned.copy()
        before = row_banned[row].copy()
        row_banned[row, ids] = True
        drawable = ~row_banned[row]
        drawable[banned] = False
        if not drawable.any():
            exhausted[row] = True
            row_banned[row] = before
    return row_banned, exhausted


def guard_end(decoder, matcher) -> tuple[str, str]:
    """A sample the copy guard left without a token ends as at a stop string ("stop")."""
    return decoder.flush() + (matcher.flush() if matcher is not None else ""), "stop"
