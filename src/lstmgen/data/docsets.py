"""Compact sets over documents, so that preparation's memory stays small per document.

A corpus of 100 million short reviews is common; a Python set costs 60-100 bytes per
entry, gigabytes for such a corpus. These cost 1 bit per document (which ones are dropped)
and 12-24 bytes per distinct document (--dedupe's hashes).
"""

from __future__ import annotations

import hashlib
import struct
from array import array
from collections.abc import Iterator
from itertools import chain, repeat

import numpy as np


class DocumentBits:
    """A set of document numbers (0, 1, 2, ...) as a bit array: 1 bit per document up to the
    largest one added."""

    def __init__(self) -> None:
        self.bits = bytearray()

    def add(self, number: int) -> None:
        byte = number >> 3
        if byte >= len(self.bits):
            # bytearray over-allocates: amortised O(1)
            self.bits.extend(bytes(byte + 1 - len(self.bits)))
        self.bits[byte] |= 1 << (number & 7)

    def __contains__(self, number: int) -> bool:
        byte = number >> 3
        return byte < len(self.bits) and bool(self.bits[byte] >> (number & 7) & 1)

    def flags(self) -> Iterator[bool]:
        """Whether each document, 0, 1, 2, ... (without end), is in the set: for a pass over all
        of them at C speed."""
        return chain(chain.from_iterable(map(_BYTE_FLAGS.__getitem__, self.bits)), repeat(False))


_BYTE_FLAGS = [tuple(bool(byte >> bit & 1) for bit in range(8)) for byte in range(256)]


class HashSet:
    """Distinct 64-bit hashes in an open-addressing table (linear probing) of unsigned 64-bit slots.

    The table is at most 2/3 full and doubles when it gets there: 12-24 bytes per distinct
    document (in one contiguous array, no Python object per entry). Memory still grows with
    the number of distinct documents: remembering what was seen is what dropping duplicates needs.
    A hash of 0 is stored as 1 (0 marks an empty slot); with 64-bit hashes, two different
    documents share a hash with probability about n^2 / 2^65 (1 in 3,700 for 100 million).
    """

    def __init__(self, capacity: int = 1 << 10) -> None:
        self.slots = array("Q", bytes(8 * capacity))  # capacity is a power of two
        self.mask = capacity - 1
        self.size = 0
        self.limit = capacity * 2 // 3

    def add(self, value: int) -> bool:
        """Add value (a 64-bit int); False if it was already there."""
        value = value or 1
        slots, mask = self.slots, self.mask
        i = value & mask
        current = slots[i]
        while current:
            if current == value:
                return False
            i = (i + 1) & mask
            current = slots[i]
        slots[i] = value
        self.size += 1
        if self.size > self.limit:
            self._grow()
        return True

    def _grow(self) -> None:
        """Double the table; the values go in by home slot, vectorised (a value's slot: its home,
        or past the one before)."""
        values = np.frombuffer(self.slots, np.uint64)
        values = values[values != 0]
        capacity = 2 * len(self.slots)
        home = (values & np.uint64(capacity - 1)).astype(np.int64)
        order = np.argsort(home, kind="stable")
        values, home = values[order], home[order]
        rank = np.arange(len(home))
        slot = np.maximum.accumulate(home - rank) + rank
        table = np.zeros(capacity, np.uint64)
        fits = slot < capacity
        table[slot[fits]] = values[fits]
        self.slots, self.mask, self.limit = (
            array("Q", table.tobytes()),
            capacity - 1,
            capacity * 2 // 3,
        )
        self.size = int(fits.sum())
        for value in values[
            ~fits
        ].tolist():  # the few that run past the end wrap round to the start
            self.add(value)

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        return len(self.slots) * self.slots.itemsize


_UNPACK = struct.Struct("<Q").unpack


def text_hash(data: bytes | str) -> int:
    """A 64-bit hash of a document's text (blake2b: well mixed, so its low bits index the table)."""
    return _UNPACK(
        hashlib.blake2b(
            data.encode("utf-8") if isinstance(data, str) else data, digest_size=8
        ).digest()
    )[0]


class Hasher:
    """text_hash of a document that arrives in chunks."""

    def __init__(self) -> None:
        self.blake = hashlib.blake2b(digest_size=8)

    def update(self, chunk: bytes | str) -> None:
        self.blake.update(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)

    def value(self) -> int:
        return _UNPACK(self.blake.digest())[0]
