"""Turn what the user names into streams of documents.

Inputs are files, folders (recursive), globs, '-' (stdin), named corpora, compressed
files (.gz .bz2 .xz .zst, and every member of a .zip) and tables (CSV/TSV, JSON Lines,
Parquet, SQLite; see tables.py). A document is either a str (a table row, a help topic)
or, for a text file, an iterator of chunks, so a large file is never held in memory.
"""

from __future__ import annotations

import bz2
import codecs
import fnmatch
import glob
import gzip
import io
import lzma
import os
import shutil
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from .corpora import NAMED_CORPORA
from .errors import LstmgenError, warn
from .store import is_token_store
from .utf8 import complete_prefix, find_invalid, fold_crlf

CHUNK_BYTES = 1 << 20
SNIFF_BYTES = 8192
COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
TABLES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
          ".parquet": "parquet", ".pq": "parquet", ".db": "sqlite", ".sqlite": "sqlite", ".sqlite3": "sqlite"}
MAGIC = {b"SQLite format 3\0": "sqlite", b"PAR1": "parquet"}
NEEDS_A_FILE = {"parquet", "sqlite"}  # read through their own libraries, not as a byte stream
WIDE_ENCODINGS = {"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}  # text full of NUL bytes
WIDE_BOMS = {codecs.BOM_UTF32_LE: "utf-32", codecs.BOM_UTF32_BE: "utf-32", codecs.BOM_UTF16_LE: "utf-16", codecs.BOM_UTF16_BE: "utf-16"}
BINARY = "it looks like a binary file, not text"
# What a damaged compressed file or zip member raises while it is read (zstandard's ZstdError is added when loaded).
READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile, lzma.LZMAError)


@dataclass
class ReadOptions:
    """How sources are read: encoding, which files, which column or field of a table."""

    encoding: str = "utf-8"  # of text, CSV and JSONL sources
    errors: str = "strict"  # undecodable bytes: strict (stop, naming file and byte offset) or replace
    include: tuple[str, ...] = ()  # glob patterns; files found in folders, globs and zips must match one
    exclude: tuple[str, ...] = ()  # glob patterns; matching files are left out
    column: str | None = None  # CSV/TSV/Parquet column (or SQLite column with table) holding the text
    field: str | None = None  # JSON Lines field holding the text; dotted for nested ("review.body")
    delimiter: str | None = None  # CSV delimiter; default from the extension (.csv ',', .tsv '\t')
    table: str | None = None  # SQLite table to read --column from
    query: str | None = None  # SQLite query whose (first or --column) column is the text
    strict: bool = False  # a malformed row stops with an error instead of being skipped and counted

    def __post_init__(self) -> None:
        self.include, self.exclude = tuple(self.include), tuple(self.exclude)
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise LstmgenError(f"unknown encoding {self.encoding!r}; use a Python codec name such as utf-8 or latin-1") from None
        if self.errors not in ("strict", "replace"):
            raise LstmgenError(f"--errors {self.errors!r} must be strict or replace")
        if self.delimiter is not None:
            self.delimiter = {"\\t": "\t", "tab": "\t"}.get(self.delimiter, self.delimiter)
            if len(self.delimiter) != 1:
                raise LstmgenError(f"--delimiter {self.delimiter!r} must be one character (or \\t / tab)")
        if self.table is not None and self.query is not None:
            raise LstmgenError("give either --query or --table/--column for SQLite, not both")
        if self.table is not None and self.column is None:
            raise LstmgenError(f"--table {self.table} needs --column: name the column that holds the text")

    @property
    def is_utf8(self) -> bool:
        return codecs.lookup(self.encoding).name == "utf-8"

    @property
    def is_wide(self) -> bool:
        """UTF-16/32: ASCII text in them is half or more NUL bytes, so the binary sniff does not apply."""
        return codecs.lookup(self.encoding).name in WIDE_ENCODINGS


class Tally:
    """What reading counted on the way: bytes read from disk, malformed rows skipped."""

    def __init__(self) -> None:
        self.bytes_read = 0
        self.malformed_rows = 0


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
    archive: zipfile.ZipFile | None = field(default=None, compare=False, repr=False)  # path, already open (see document_stream)

    def open_binary(self, tally: Tally | None = None):
        """The source's bytes as a stream, decompressed."""
        if self.member is not None:
            try:
                raw = (self.archive or zipfile.ZipFile(self.path)).open(self.member)
            except (*READ_ERRORS, KeyError) as e:
                raise LstmgenError(f"{self.name}: cannot read this zip member ({e}); is the archive complete?") from None
        else:
            raw = open(self.path, "rb")
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

    def documents(self, options: ReadOptions | None = None, *, tally: Tally | None = None, utf8: bool = False) -> Iterator:
        """Yield this source's documents: a str each, or an iterator of text chunks for a text file.

        With utf8=True the chunks of a UTF-8 text file come as validated UTF-8 bytes (no decoding).
        """
        from . import tables

        options = options or ReadOptions()
        tally = tally or Tally()
        if self.kind == "named":
            yield from NAMED_CORPORA[self.name]()
        elif self.kind in ("csv", "tsv") and options.column is not None:
            yield from tables.csv_rows(self, options, tally)
        elif self.kind == "jsonl" and options.field is not None:
            yield from tables.jsonl_rows(self, options, tally)
        elif self.kind == "parquet":
            yield from tables.parquet_rows(self, options, tally)
        elif self.kind == "sqlite":
            yield from tables.sqlite_rows(self, options, tally)
        elif utf8 and options.is_utf8:
            yield _closing(self.open_binary(tally), lambda f: utf8_chunks(f, label=self.name, errors=options.errors))
        else:
            yield _closing(self.open_binary(tally), lambda f: decoded_chunks(f, encoding=options.encoding, errors=options.errors, label=self.name))


def document_stream(sources: Iterable[Source], options: ReadOptions, *, tally: Tally, utf8: bool = False) -> Iterator[tuple[Source, object]]:
    """Every source's documents, in order, with the source each comes from.

    The members of a zip archive come one after another; the archive is opened once for all
    of them (opening it per member re-reads its whole central directory: quadratic in members).
    """
    archive = None
    try:
        for source in sources:
            if source.member is not None:
                if archive is None or archive.filename != str(source.path):
                    if archive is not None:
                        archive.close()
                    archive = _open_zip(source.path)
                source = replace(source, archive=archive)
            for document in source.documents(options, tally=tally, utf8=utf8):
                yield source, document
    finally:
        if archive is not None:
            archive.close()


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise LstmgenError(f"{path} is not a readable zip archive ({e})") from None


def _closing(stream, read) -> Iterator:
    with stream:
        yield from read(stream)


def zstd_reader(raw, name: str):
    try:
        import zstandard
    except ImportError:
        raise LstmgenError(f"{name} is zstd-compressed; install the extra that reads it: pip install 'lstmgen[zstd]'") from None
    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)


def decoded_chunks(stream, *, encoding: str, errors: str, label: str) -> Iterator[str]:
    """Decode a binary stream in chunks; an undecodable byte names the file and its byte offset."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
    except LookupError:
        raise LstmgenError(f"unknown encoding {encoding!r}; use a Python codec name such as utf-8 or latin-1") from None
    offset = 0  # bytes read before the current chunk
    held_cr = ""  # a trailing '\r' waits for the next chunk, so a CRLF split between chunks still folds
    started = False  # whether any text came yet: a byte-order mark before it is no text (Excel writes one)
    while True:
        chunk = _read(stream, label)
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
        data = _read(stream, label)
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


def _read(stream, label: str, size: int | None = None) -> bytes:
    try:
        return stream.read(size or CHUNK_BYTES)
    except _read_errors() as e:  # evaluated only when something is raised
        raise LstmgenError(f"{label}: cannot read it, the data is damaged ({e}); is the file complete?") from None


def _read_errors() -> tuple:
    zstandard = sys.modules.get("zstandard")
    return READ_ERRORS + ((zstandard.ZstdError,) if zstandard is not None else ())


def _invalid(label: str, encoding: str, at: int) -> LstmgenError:
    return LstmgenError(
        f"{label}: invalid {encoding} at byte offset {at}; pass --encoding with the file's real encoding, or --errors replace"
    )


def read_text_chunks(path: Path, *, encoding: str, errors: str, label: str) -> Iterator[str]:
    """Decode a file (decompressed if its name says so) in chunks of text."""
    yield from _closing(Source(label, Path(path)).open_binary(), lambda f: decoded_chunks(f, encoding=encoding, errors=errors, label=label))


def looks_binary(path: Path) -> bool:
    """A file whose first 8 kB hold a NUL byte is not text."""
    with open(path, "rb") as f:
        return b"\0" in f.read(SNIFF_BYTES)


def _binary_or_wide(name: str, head: bytes, options: ReadOptions) -> str | None:
    """Why a text file cannot be read as it is named (binary, or UTF-16/32 without --encoding), or None.

    UTF-16/32 text is full of NUL bytes, so the NUL-byte sniff is skipped for it.
    """
    wide = next((enc for bom, enc in WIDE_BOMS.items() if head.startswith(bom)), None)
    if options.is_wide:
        return None
    if wide is not None:
        return f"it is {wide.upper()} text (it starts with a byte-order mark); pass --encoding {wide}"
    if b"\0" in head and Path(name).suffix.lower() not in COMPRESSED:
        return BINARY
    return None


def kind_of(name: str, head: bytes = b"") -> str:
    """What a file holds, from its name without the compression suffix (and its first bytes)."""
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    path = Path(name)
    if path.suffix.lower() in COMPRESSED:
        path = path.with_suffix("")
    return TABLES.get(path.suffix.lower(), "text")


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(SNIFF_BYTES)


def _wanted(relative: str, options: ReadOptions) -> bool:
    name = relative.rsplit("/", 1)[-1]
    match = lambda pattern: fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(name, pattern)  # noqa: E731
    if options.include and not any(match(p) for p in options.include):
        return False
    return not any(match(p) for p in options.exclude)


def _zip_members(path: Path, spec: str, options: ReadOptions, *, found_in_folder: bool) -> list[Source]:
    found = []
    with _open_zip(path) as archive:
        for info in archive.infolist():
            if info.is_dir() or not _wanted(info.filename, options) or Path(info.filename).name.startswith("."):
                continue
            name = f"{path}:{info.filename}"
            try:
                with archive.open(info) as member:
                    head = _read(member, name, SNIFF_BYTES)
            except READ_ERRORS as e:  # a bad local header
                raise LstmgenError(f"{name}: cannot read this zip member ({e}); is the archive complete?") from None
            kind = kind_of(info.filename, head)
            why = _binary_or_wide(info.filename, head, options) if kind == "text" else None
            if kind in NEEDS_A_FILE:
                warn(f"skipping {name}: a {kind} file inside a zip cannot be read; extract it first")
            elif why:
                warn(f"skipping {name}: {why}")
            else:
                found.append(Source(f"{path}:{info.filename}", path, kind, member=info.filename, spec=spec))
    if not found and not found_in_folder:
        raise LstmgenError(f"{path} holds no text files (after --include/--exclude); name an archive of text files")
    return found


def _file_source(path: Path, spec: str, options: ReadOptions, *, found_in_folder: bool) -> list[Source]:
    """The source(s) of one file; in a folder, files that cannot be read as text are skipped with a warning."""
    try:
        head = _head(path)
    except OSError as e:
        if not found_in_folder:
            raise LstmgenError(f"cannot read {path} ({e.strerror})") from None
        warn(f"skipping {path}: cannot read it ({e.strerror})")
        return []
    if path.suffix.lower() == ".zip":
        return _zip_members(path, spec, options, found_in_folder=found_in_folder)
    kind = kind_of(path.name, head)
    compressed = path.suffix.lower() in COMPRESSED
    why = _binary_or_wide(path.name, head, options) if kind == "text" else None
    if why:
        if not found_in_folder:
            hint = "; name text files, tables or compressed text" if why == BINARY else ""
            raise LstmgenError(f"{path}: {why}{hint}")
        warn(f"skipping {path}: {why}")
        return []
    if kind == "sqlite" and options.query is None and options.table is None:
        if found_in_folder:
            warn(f"skipping {path}: a SQLite database; read it with --query or --table/--column")
            return []
        raise LstmgenError(f"{path} is a SQLite database; say what to read with --query \"SELECT ...\" or --table NAME --column NAME")
    if kind in NEEDS_A_FILE and compressed:
        raise LstmgenError(f"{path}: a compressed {kind} file cannot be read; decompress it first")
    if not found_in_folder and (kind in ("csv", "tsv") and options.column is None or kind == "jsonl" and options.field is None):
        what = "--column NAME" if kind != "jsonl" else "--field NAME"
        warn(f"{path} is read as plain text; pass {what} to read one {what[2:-5]} of each row instead")
    return [Source(name=str(path), path=path, kind=kind, spec=spec)]


def _walk_folder(folder: Path, spec: str, options: ReadOptions) -> list[Source]:
    found: list[Source] = []
    for root, dirs, files in os.walk(folder):
        if is_token_store(Path(root)):  # token ids and meta.json are no text to learn from
            warn(f"skipping {root}: a prepared token store, not text")
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith(".") or not _wanted(path.relative_to(folder).as_posix(), options):
                continue
            found.extend(_file_source(path, spec, options, found_in_folder=True))
    if not found:
        raise LstmgenError(f"folder {folder} has no text files (some may have been skipped); point at a folder that holds .txt or other text files")
    return found


def _spool_stdin(spool_dir: Path) -> Source:
    spool_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="stdin-", suffix=".txt", dir=spool_dir)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, CHUNK_BYTES)
    return Source(name="<stdin>", path=Path(name), spec="-")


def resolve_sources(specs: Iterable[str], *, spool_dir: Path, options: ReadOptions | None = None) -> list[Source]:
    """Check that every named input exists and expand folders, globs and zips; '-' is stdin, spooled to spool_dir."""
    options = options or ReadOptions()
    specs = [str(s) for s in specs]
    if not specs:
        raise LstmgenError("no input given; name text files, folders, '-' for stdin, or python-docs")
    sources: list[Source] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if spec == "-":
            sources.append(_spool_stdin(spool_dir))
        elif path.is_dir():
            sources.extend(_walk_folder(path, spec, options))
        elif path.is_file():
            sources.extend(_file_source(path, spec, options, found_in_folder=False))
        elif spec in NAMED_CORPORA:
            sources.append(Source(name=spec, kind="named", spec=spec))
        elif path.exists():
            raise LstmgenError(f"{spec} is neither a file nor a folder; give a text file or a folder of them")
        elif glob.has_magic(spec):
            matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True))
            files = [p for p in matches if p.is_file() and not p.name.startswith(".") and _wanted(p.as_posix(), options)]
            if not files:
                raise LstmgenError(f"the pattern {spec} matches no files; check it (quote it so the shell leaves it to lstmgen)")
            for p in files:
                sources.extend(_file_source(p, spec, options, found_in_folder=True))
        else:
            named = ", ".join(sorted(NAMED_CORPORA))
            raise LstmgenError(
                f"{spec} does not exist; give a text file, a folder, '-' for stdin, or a named corpus ({named})"
            )
    _check_table_options(sources, options)
    return sources


def _check_table_options(sources: list[Source], options: ReadOptions) -> None:
    """A table option that no source uses is a mistake worth saying (a typo, a wrong file)."""
    kinds = {s.kind for s in sources}
    if options.column is not None and not kinds & {"csv", "tsv", "parquet", "sqlite"}:
        raise LstmgenError(f"--column {options.column} was given but no source is a table (.csv, .tsv, .parquet or SQLite)")
    if options.field is not None and "jsonl" not in kinds:
        raise LstmgenError(f"--field {options.field} was given but no source is JSON Lines (.jsonl or .ndjson)")
    if (options.query is not None or options.table is not None) and "sqlite" not in kinds:
        raise LstmgenError("--query/--table were given but no source is a SQLite database; name it with --sqlite DB")
