"""Turn what the user names (files, folders, '-', named corpora) into streams of documents.

A document is an iterator of text chunks, so a large file is never held in memory whole.
"""

from __future__ import annotations

import codecs
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .corpora import NAMED_CORPORA
from .errors import LstmgenError, warn

CHUNK_BYTES = 1 << 20
SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Source:
    """One input: a text file on disk or a named corpus."""

    name: str  # as shown to the user and recorded in meta.json
    path: Path | None = None  # None for a named corpus

    def documents(self, *, encoding: str = "utf-8", errors: str = "strict") -> Iterator[Iterator[str]]:
        """Yield this source's documents, each as an iterator of text chunks."""
        if self.path is None:
            for text in NAMED_CORPORA[self.name]():
                yield iter((text,))
        else:
            yield read_text_chunks(self.path, encoding=encoding, errors=errors, label=self.name)


def read_text_chunks(path: Path, *, encoding: str, errors: str, label: str) -> Iterator[str]:
    """Decode a file in chunks; an undecodable byte names the file and its byte offset."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
    except LookupError:
        raise LstmgenError(f"unknown encoding {encoding!r}; use a Python codec name such as utf-8 or latin-1") from None
    offset = 0  # bytes read before the current chunk
    held_cr = ""  # a trailing '\r' waits for the next chunk, so a CRLF split between chunks still folds
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK_BYTES)
            buffered = len(decoder.getstate()[0])
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                at = offset - buffered + e.start
                raise LstmgenError(
                    f"{label}: invalid {encoding} at byte offset {at}; "
                    f"pass --encoding with the file's real encoding, or --errors replace"
                ) from None
            text = held_cr + text
            held_cr = ""
            if chunk and text.endswith("\r"):
                text, held_cr = text[:-1], "\r"
            if text:
                yield text.replace("\r\n", "\n") if "\r" in text else text
            if not chunk:
                return
            offset += len(chunk)


def looks_binary(path: Path) -> bool:
    """A file whose first 8 kB hold a NUL byte is not text."""
    with open(path, "rb") as f:
        return b"\0" in f.read(SNIFF_BYTES)


def _walk_folder(folder: Path) -> list[Source]:
    found: list[Source] = []
    skipped = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            try:
                binary = looks_binary(path)
            except OSError as e:
                warn(f"skipping {path}: cannot read it ({e.strerror})")
                continue
            if binary:
                skipped += 1
                warn(f"skipping {path}: it looks like a binary file, not text")
                continue
            found.append(Source(name=str(path), path=path))
    if not found:
        extra = f" ({skipped} binary files skipped)" if skipped else ""
        raise LstmgenError(f"folder {folder} has no text files{extra}; point at a folder that holds .txt or other text files")
    return found


def resolve_sources(specs: Iterable[str], *, spool_dir: Path) -> list[Source]:
    """Check that every named input exists and expand folders; '-' is stdin, spooled to spool_dir."""
    specs = list(specs)
    if not specs:
        raise LstmgenError("no input given; name text files, folders, '-' for stdin, or python-docs")
    sources: list[Source] = []
    for spec in specs:
        if spec == "-":
            spool_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix="stdin-", suffix=".txt", dir=spool_dir)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(sys.stdin.buffer, out, CHUNK_BYTES)
            sources.append(Source(name="<stdin>", path=Path(name)))
            continue
        path = Path(spec).expanduser()
        if path.is_dir():
            sources.extend(_walk_folder(path))
        elif path.is_file():
            sources.append(Source(name=str(path), path=path))
        elif spec in NAMED_CORPORA:
            sources.append(Source(name=spec))
        elif path.exists():
            raise LstmgenError(f"{spec} is neither a file nor a folder; give a text file or a folder of them")
        else:
            named = ", ".join(sorted(NAMED_CORPORA))
            raise LstmgenError(
                f"{spec} does not exist; give a text file, a folder, '-' for stdin, or a named corpus ({named})"
            )
    return sources
