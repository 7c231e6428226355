"""Reading one source: its bytes (decompressed, counted), decoded text in chunks, UTF-8 checks.

A Source is one input found by sources.py: a file, a zip member, or a named corpus. Text is
read in chunks of CHUNK_BYTES, so a large file is never held in memory; an undecodable byte
is a one-line error naming the file and its offset.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import sys
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lstmgen.errors import LstmgenError
from lstmgen.tokens.utf8 import complete_prefix, find_invalid, fold_crlf

CHUNK_BYTES = 1 << 20
COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
# What a damaged compressed file or zip member raises while it is read (zstandard's ZstdError
# is added when loaded).
READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile, lzma.LZMAError)


class Tally:
    """What reading counted on the way: bytes read from disk, malformed rows skipped."""

    def __init__(self) -> None:
        self.bytes_read = 0
        self.malformed_rows = 0
        self.malformed_notes: list[str] = []  # where and why, for the first few
        self.malformed_in: dict[str, int] = {}  # by source name

    def malformed(self, source: str, note: str) -> None:
        self.malformed_rows += 1
        self.malformed_in[source] = self.malformed_in.get(source, 0) + 1
        if len(self.malformed_notes) < 3:
            self.malformed_notes.append(note)

    def dropped(self) -> str:
        """'1 malformed row (a.csv: line 3, longer than ... characters)', or ''."""
        if not self.malformed_rows:
            return ""
        more = ", …" if self.malformed_rows > len(self.malformed_notes) else ""
        plural = "s" if self.malformed_rows != 1 else ""
        notes = "; ".join(self.malformed_notes)
        return f"{self.malformed_rows:,} malformed row{plural} ({notes}{more})"


class _CountingFile(io.RawIOBase):
    """A binary file that adds what is read to a Tally (for MB/s and the progress bar)."""

    def __init__(self, raw, tally: Tally):
        self._raw, self._tally = raw, tally

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        self._tally.bytes_read += n or 0
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


@dataclass(frozen=True)
class Source:
    """One input: a file (or a zip member) of some kind, or a named corpus."""

    name: str  # as shown to the user and recorded in meta.json
    path: Path | None = None  # None for a named corpus
    kind: str = "text"  # text, csv, tsv, jsonl, parquet, sqlite or named
    member: str | None = None  # the member of the zip archive at path
    spec: str = ""  # the argument the user gave that found this source
    # path, already open (see document_stream)
    archive: zipfile.ZipFile | None = field(default=None, compare=False, repr=False)

    def open_binary(self, tally: Tally | None = None):
        """The source's bytes as a stream, decompressed."""
        if self.member is not None:
            try:
                raw = (self.archive or zipfile.ZipFile(self.path)).open(self.member)
            except (*READ_ERRORS, KeyError) as e:
                raise LstmgenError(
                    f"{self.name}: cannot read this zip member ({e}); is the archive complete?"
                ) from None
        else:
            raw = open(self.path, "rb")  # noqa: SIM115 - returned open: the caller closes it
        if tally is not None:
            raw = io.BufferedReader(_CountingFile(raw, tally), CHUNK_BYTES)
        compression = COMPRESSED.get(Path(self.member or self.path.name).suffix.lower())
        if compression == "gzip":
            return gzip.GzipFile(fileobj=raw, mode="rb")
        if compression == "bz2":
            return bz2.BZ2File(raw, "rb")
        if compression == "xz":
            return lzma.LZMAFile(raw, "rb")
        if compression == "zstd":
            return zstd_reader(raw, self.name)
        return raw


def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise LstmgenError(f"{path} is not a readable zip archive ({e})") from None


def closing(stream, read) -> Iterator:
    with stream:
        yield from read(stream)


def zstd_reader(raw, name: str):
    try:
        import zstandard
    except ImportError:
        raise LstmgenError(
            f"{name} is zstd-compressed; install the extra that reads it: "
            "pip install 'lstmgen[zstd]'"
        ) from None
    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)


def decoded_chunks(stream, *, encoding: str, errors: str, label: str) -> Iterator[str]:
    """Decode a binary stream in chunks; an undecodable byte names the file and its byte offset."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
    except LookupError:
        raise LstmgenError(
            f"unknown encoding {encoding!r}; use a Python codec name such as utf-8 or latin-1"
        ) from None
    offset = 0  # bytes read before the current chunk
    # a trailing '\r' waits for the next chunk, so a CRLF split between chunks still folds
    held_cr = ""
    # whether any text came yet: a byte-order mark before it is no text (Excel writes one)
    started = False
    while True:
        chunk = read_chunk(stream, label)
        buffered = len(decoder.getstate()[0])
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as e:
            raise _invalid(label, encoding, offset - buffered + e.start) from None
        if not started and text:
            started = True
            text = text.removeprefix("\ufeff")
        text = held_cr + text
        held_cr = ""
        if chunk and text.endswith("\r"):
            text, held_cr = text[:-1], "\r"
        if text:
            yield text.replace("\r\n", "\n") if "\r" in text else text
        if not chunk:
            return
        offset += len(chunk)


def utf8_chunks(stream, *, label: str, errors: str = "strict") -> Iterator[bytes]:
    """Valid UTF-8 chunks of a binary stream with CRLF folded to LF, without decoding to str.

    Chunks end on a character boundary, so each can be encoded on its own.
    """
    offset = 0  # stream bytes before `carry`
    carry = b""
    started = False  # a byte-order mark before the first character is no text
    while True:
        data = read_chunk(stream, label)
        chunk = carry + data
        cut = complete_prefix(chunk) if data else len(chunk)
        chunk, carry = chunk[:cut], chunk[cut:]
        if chunk:
            bad = find_invalid(chunk)
            if bad is not None:
                if errors == "strict":
                    raise _invalid(label, "utf-8", offset + bad)
                chunk = chunk.decode("utf-8", "replace").encode("utf-8")
            if not started:
                started = True
                chunk = chunk.removeprefix(codecs.BOM_UTF8)
            if chunk:
                yield fold_crlf(chunk)
            offset += cut
        if not data:
            return


def read_chunk(stream, label: str, size: int | None = None) -> bytes:
    try:
        return stream.read(size or CHUNK_BYTES)
    except _read_errors() as e:  # evaluated only when something is raised
        raise LstmgenError(
            f"{label}: cannot read it, the data is damaged ({e}); is the file complete?"
        ) from None


def _read_errors() -> tuple:
    zstandard = sys.modules.get("zstandard")
    return READ_ERRORS + ((zstandard.ZstdError,) if zstandard is not None else ())


def _invalid(label: str, encoding: str, at: int) -> LstmgenError:
    return LstmgenError(
        f"{label}: invalid {encoding} at byte offset {at}; "
        "pass --encoding with the file's real encoding, or --errors replace"
    )


def read_text_chunks(path: Path, *, encoding: str, errors: str, label: str) -> Iterator[str]:
    """Decode a file (decompressed if its name says so) in chunks of text."""
    yield from closing(
        Source(label, Path(path)).open_binary(),
        lambda f: decoded_chunks(f, encoding=encoding, errors=errors, label=label),
    )
