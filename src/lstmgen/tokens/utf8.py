"""UTF-8 bytes without decoding them: validation, chunk boundaries, code points.

Decoding a large corpus into Python strings twice (count, then encode) costs more than
everything else in preparation. Most text is ASCII with a few multi-byte characters, so
these work on the bytes with `bytes.translate` and numpy, touching only the non-ASCII
bytes one by one (vectorised).
"""

from __future__ import annotations

import numpy as np

ASCII = bytes(range(128))
NON_ASCII = bytes(range(128, 256))


def complete_prefix(data: bytes) -> int:
    """Length of the part of data ending on a whole character and not on a '\\r' (kept for CRLF)."""
    end = len(data)
    for i in range(end - 1, max(end - 4, -1), -1):
        byte = data[i]
        if byte < 0x80:
            break
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            if end - i < needed:
                end = i
            break
    if end and data[end - 1] == 0x0D:
        end -= 1
    return end


def find_invalid(data: bytes) -> int | None:
    """The offset of the first byte that is not valid UTF-8, or None if data is valid."""
    if data.isascii():
        return None
    array = np.frombuffer(data, np.uint8)
    high = np.flatnonzero(array >= 0x80)
    try:
        # the multi-byte sequences alone (ASCII never sits inside one)
        array[high].tobytes().decode("utf-8")
        continuation = array[high] < 0xC0
        # ...and every continuation byte directly follows the byte before it in its sequence.
        if np.all(np.diff(high)[continuation[1:]] == 1):
            return None
    except UnicodeDecodeError:
        pass
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start
    return None  # pragma: no cover - the checks above agree with the decoder


def fold_crlf(data: bytes) -> bytes:
    """CRLF -> LF (a lone CR stays)."""
    if b"\r" not in data:
        return data
    array = np.frombuffer(data, np.uint8)
    cr = np.flatnonzero(array == 0x0D)
    if cr[-1] + 1 < len(array) and np.all(array[cr + 1] == 0x0A):
        # every CR starts a CRLF: deleting them is much faster than replace
        return data.translate(None, b"\r")
    return data.replace(b"\r\n", b"\n")


def lead_code_points(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of lead bytes of multi-byte characters in valid UTF-8, and their code points."""
    lead = np.flatnonzero(array >= 0xC0)
    last = len(array) - 1
    b0 = array[lead].astype(np.uint32)
    c1 = array[np.minimum(lead + 1, last)].astype(np.uint32) & 0x3F
    c2 = array[np.minimum(lead + 2, last)].astype(np.uint32) & 0x3F
    c3 = array[np.minimum(lead + 3, last)].astype(np.uint32) & 0x3F
    two = ((b0 & 0x1F) << 6) | c1
    three = ((b0 & 0x0F) << 12) | (c1 << 6) | c2
    four = ((b0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3
    return lead, np.where(b0 < 0xE0, two, np.where(b0 < 0xF0, three, four))
