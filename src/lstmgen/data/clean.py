"""Optional cleaning of documents while they stream: HTML, Unicode form, case, control
characters, whitespace.

A document may arrive in chunks, and must come out the same however it was cut. Whatever
could continue into the next chunk (an open tag, an entity, a combining accent) is held
back until it is whole. Whitespace is collapsed afterwards, as a second stage over the
cleaned text, because cleaning makes whitespace of its own (<br> -> newline, &nbsp; -> space)
and removes what separated it (control characters between spaces).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Iterator

from lstmgen.config import CleanOptions

BREAK_TAG = re.compile(r"<\s*(?:br|/?p|/?div|/?li|/?tr|/?h[1-6])\b[^<>]*>", re.IGNORECASE)
ANY_TAG = re.compile(r"<[!/?]?[A-Za-z][^<>]*>|<!--.*?-->", re.DOTALL)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and newline
SPACES = re.compile(r"[^\S\n]+")
SPACE_AT_LINE_EDGE = re.compile(r" ?\n ?")
BLANK_LINES = re.compile(r"\n{3,}")
HOLD_TAG, HOLD_ENTITY = 4096, 32  # longest tag / entity held back at a chunk's end


class Cleaner:
    """Applies CleanOptions' text changes to whole documents or to documents in chunks."""

    def __init__(self, options: CleanOptions):
        self.options = options

    def text(self, text: str) -> str:
        """A whole document, cleaned."""
        text = self._apply(text)
        return _collapse(text).strip() if self.options.collapse_whitespace else text

    def chunks(self, chunks: Iterable[str | bytes]) -> Iterator[str]:
        """A document in chunks, cleaned chunk by chunk: the same text as text() of the whole."""
        cleaned = self._cleaned_chunks(chunks)
        return _collapsed_chunks(cleaned) if self.options.collapse_whitespace else cleaned

    def _cleaned_chunks(self, chunks: Iterable[str | bytes]) -> Iterator[str]:
        held = ""
        for chunk in chunks:
            text = held + (chunk.decode("utf-8") if isinstance(chunk, bytes) else chunk)
            cut = self._safe_end(text)
            text, held = self._apply(text[:cut]), text[cut:]
            if text:
                yield text
        text = self._apply(held)
        if text:
            yield text

    def _safe_end(self, text: str) -> int:
        """Where text can be cut so what follows cannot change how the part before is cleaned."""
        end = len(text)
        if self.options.strip_html:
            tag = text.rfind("<", max(0, end - HOLD_TAG))
            if tag >= 0 and text.find(">", tag) < 0:
                end = tag
            entity = text.rfind("&", max(0, end - HOLD_ENTITY), end)
            if entity >= 0 and text.find(";", entity, end) < 0:
                end = entity
        if self.options.normalize:
            while end > 0 and end > len(text) - 8 and unicodedata.combining(text[end - 1]):
                end -= 1
            end = max(end - 1, 0)  # the last starter may still combine with what follows
        return end

    def _apply(self, text: str) -> str:
        o = self.options
        if o.strip_html:
            text = html.unescape(ANY_TAG.sub("", BREAK_TAG.sub("\n", text)))
        if o.normalize:
            text = unicodedata.normalize(o.normalize.upper(), text)
        if o.lower:
            text = text.lower()
        if o.strip_control:
            text = CONTROL.sub("", text)
        return text


def _collapse(text: str) -> str:
    """Each run of whitespace -> one space, or one or two newlines if it holds any."""
    return BLANK_LINES.sub("\n\n", SPACE_AT_LINE_EDGE.sub("\n", SPACES.sub(" ", text)))


def _collapsed_chunks(chunks: Iterable[str]) -> Iterator[str]:
    """_collapse over a text in chunks, without whitespace at its start or end.

    Trailing whitespace is held back: the next chunk may continue its run. It is held
    collapsed (at most two characters), which collapses with more whitespace just as the
    whole run would, so a document of nothing but spaces holds nothing large.
    """
    held = ""
    started = False
    for chunk in chunks:
        text = held + chunk
        end = len(text.rstrip())
        if not end:
            held = _collapse(text)
            continue
        text, held = _collapse(text[:end]), _collapse(text[end:])
        if not started:
            text, started = text.lstrip(), True
        yield text
