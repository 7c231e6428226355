"""Find what the user names: files, folders (recursive), globs, '-' (stdin), named corpora.

Each becomes a Source with its kind (text or a table format, from its name and first bytes);
the members of a .zip are sources of their own. A file that cannot be read as text is an
error when named, and skipped when found in a folder or by a glob.
"""

from __future__ import annotations

import codecs
import fnmatch
import glob
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from lstmgen.config import ReadOptions
from lstmgen.data.corpora import NAMED_CORPORA
from lstmgen.data.reading import (
    CHUNK_BYTES,
    COMPRESSED,
    READ_ERRORS,
    Source,
    open_zip,
    read_chunk,
)
from lstmgen.data.store import is_token_store
from lstmgen.errors import LstmgenError, warn

SNIFF_BYTES = 8192
TABLES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".db": "sqlite",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
}
MAGIC = {b"SQLite format 3\0": "sqlite", b"PAR1": "parquet"}
NEEDS_A_FILE = {"parquet", "sqlite"}  # read through their own libraries, not as a byte stream
WIDE_BOMS = {
    codecs.BOM_UTF32_LE: "utf-32",
    codecs.BOM_UTF32_BE: "utf-32",
    codecs.BOM_UTF16_LE: "utf-16",
    codecs.BOM_UTF16_BE: "utf-16",
}
BINARY = "it looks like a binary file, not text"


def looks_binary(path: Path) -> bool:
    """A file whose first 8 kB hold a NUL byte is not text."""
    with open(path, "rb") as f:
        return b"\0" in f.read(SNIFF_BYTES)


def _binary_or_wide(name: str, head: bytes, options: ReadOptions) -> str | None:
    """Why a text file cannot be read as it is named (binary, or UTF-16/32 without --encoding),
    or None.

    UTF-16/32 text is full of NUL bytes, so the NUL-byte sniff is skipped for it.
    """
    wide = next((enc for bom, enc in WIDE_BOMS.items() if head.startswith(bom)), None)
    if options.is_wide:
        return None
    if wide is not None:
        return (
            f"it is {wide.upper()} text (it starts with a byte-order mark); pass --encoding {wide}"
        )
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

    def match(pattern: str) -> bool:
        return fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(name, pattern)

    if options.include and not any(match(p) for p in options.include):
        return False
    return not any(match(p) for p in options.exclude)


def _zip_members(
    path: Path, spec: str, options: ReadOptions, *, found_in_folder: bool
) -> list[Source]:
    found = []
    with open_zip(path) as archive:
        for info in archive.infolist():
            if (
                info.is_dir()
                or not _wanted(info.filename, options)
                or Path(info.filename).name.startswith(".")
            ):
                continue
            name = f"{path}:{info.filename}"
            try:
                with archive.open(info) as member:
                    head = read_chunk(member, name, SNIFF_BYTES)
            except READ_ERRORS as e:  # a bad local header
                raise LstmgenError(
                    f"{name}: cannot read this zip member ({e}); is the archive complete?"
                ) from None
            kind = kind_of(info.filename, head)
            why = _binary_or_wide(info.filename, head, options) if kind == "text" else None
            if kind in NEEDS_A_FILE:
                warn(
                    f"skipping {name}: a {kind} file inside a zip cannot be read; extract it first"
                )
            elif why:
                warn(f"skipping {name}: {why}")
            else:
                found.append(
                    Source(f"{path}:{info.filename}", path, kind, member=info.filename, spec=spec)
                )
    if not found and not found_in_folder:
        raise LstmgenError(
            f"{path} holds no text files (after --include/--exclude); name an archive of text files"
        )
    return found


def _file_source(
    path: Path,
    spec: str,
    options: ReadOptions,
    *,
    found_in_folder: bool,
    binary: list[Path] | None = None,
) -> list[Source]:
    """The source(s) of one file; in a folder, files that cannot be read as text are skipped
    with a warning (binary ones noted in `binary`, said in one line at the end)."""
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
        if why == BINARY and binary is not None:
            binary.append(path)
        else:
            warn(f"skipping {path}: {why}")
        return []
    if kind == "sqlite" and options.query is None and options.table is None:
        if found_in_folder:
            warn(f"skipping {path}: a SQLite database; read it with --query or --table/--column")
            return []
        raise LstmgenError(
            f"{path} is a SQLite database; say what to read with "
            '--query "SELECT ..." or --table NAME --column NAME'
        )
    if kind in NEEDS_A_FILE and compressed:
        raise LstmgenError(f"{path}: a compressed {kind} file cannot be read; decompress it first")
    if not found_in_folder and (
        kind in ("csv", "tsv")
        and options.column is None
        or kind == "jsonl"
        and options.field is None
    ):
        what = "--column NAME" if kind != "jsonl" else "--field NAME"
        warn(
            f"{path} is read as plain text; "
            f"pass {what} to read one {what[2:-5]} of each row instead"
        )
    return [Source(name=str(path), path=path, kind=kind, spec=spec)]


def _walk_folder(folder: Path, spec: str, options: ReadOptions, binary: list[Path]) -> list[Source]:
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
            found.extend(_file_source(path, spec, options, found_in_folder=True, binary=binary))
    if not found:
        _say_binary(binary)
        raise LstmgenError(
            f"folder {folder} has no text files (some may have been skipped); "
            "point at a folder that holds .txt or other text files"
        )
    return found


def _spool_stdin(spool_dir: Path) -> Source:
    spool_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="stdin-", suffix=".txt", dir=spool_dir)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out, CHUNK_BYTES)
    return Source(name="<stdin>", path=Path(name), spec="-")


def resolve_sources(
    specs: Iterable[str], *, spool_dir: Path, options: ReadOptions | None = None
) -> list[Source]:
    """Check that every named input exists and expand folders, globs and zips; '-' is stdin,
    spooled to spool_dir."""
    options = options or ReadOptions()
    specs = [str(s) for s in specs]
    if not specs:
        raise LstmgenError(
            "no input given; name text files, folders, '-' for stdin, or python-docs"
        )
    sources: list[Source] = []
    binary: list[Path] = []  # files found in folders or by globs that are not text
    for spec in specs:
        path = Path(spec).expanduser()
        if spec == "-":
            sources.append(_spool_stdin(spool_dir))
        elif path.is_dir():
            sources.extend(_walk_folder(path, spec, options, binary))
        elif path.is_file():
            sources.extend(_file_source(path, spec, options, found_in_folder=False))
        elif spec in NAMED_CORPORA:
            sources.append(Source(name=spec, kind="named", spec=spec))
        elif path.exists():
            raise LstmgenError(
                f"{spec} is neither a file nor a folder; give a text file or a folder of them"
            )
        elif glob.has_magic(spec):
            matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True))
            files = [
                p
                for p in matches
                if p.is_file() and not p.name.startswith(".") and _wanted(p.as_posix(), options)
            ]
            if not files:
                raise LstmgenError(
                    f"the pattern {spec} matches no files; "
                    "check it (quote it so the shell leaves it to lstmgen)"
                )
            for p in files:
                sources.extend(_file_source(p, spec, options, found_in_folder=True, binary=binary))
        else:
            named = ", ".join(sorted(NAMED_CORPORA))
            raise LstmgenError(
                f"{spec} does not exist; give a text file, a folder, '-' for stdin, "
                f"or a named corpus ({named})"
            )
    _say_binary(binary)
    _check_table_options(sources, options)
    return sources


def _say_binary(binary: list[Path]) -> None:
    """One line for the binary files skipped (a __pycache__ holds hundreds), naming the
    --exclude that leaves the commonest kind out."""
    if len(binary) == 1:
        warn(f"skipping {binary[0]}: {BINARY}")
    elif binary:
        suffixes = Counter(p.suffix.lower() for p in binary if p.suffix)
        pattern = f"'*{suffixes.most_common(1)[0][0]}'" if suffixes else "PATTERN"
        warn(
            f"skipped {len(binary):,} files that look binary, not text (e.g. {binary[0]}); "
            f"leave them out with --exclude {pattern}"
        )
    binary.clear()


def _check_table_options(sources: list[Source], options: ReadOptions) -> None:
    """A table option that no source uses is a mistake worth saying (a typo, a wrong file)."""
    kinds = {s.kind for s in sources}
    if options.column is not None and not kinds & {"csv", "tsv", "parquet", "sqlite"}:
        raise LstmgenError(
            f"--column {options.column} was given but no source is a table "
            "(.csv, .tsv, .parquet or SQLite)"
        )
    if options.field is not None and "jsonl" not in kinds:
        raise LstmgenError(
            f"--field {options.field} was given but no source is JSON Lines (.jsonl or .ndjson)"
        )
    _check_conditions(sources, options)
    if (options.query is not None or options.table is not None) and "sqlite" not in kinds:
        raise LstmgenError(
            "--query/--table were given but no source is a SQLite database; "
            "name it with --sqlite DB"
        )


def _check_conditions(sources: list[Source], options: ReadOptions) -> None:
    """With a condition, every source must be a table read with its text column (or field)."""
    if options.condition_column:
        wanted, flag = {"csv", "tsv", "parquet", "sqlite"}, "--condition-column"
    elif options.condition_field:
        wanted, flag = {"jsonl"}, "--condition-field"
    else:
        return
    others = [s.name for s in sources if s.kind not in wanted]
    if others:
        what = (
            "JSON Lines" if flag == "--condition-field" else "a table (.csv .tsv .parquet SQLite)"
        )
        raise LstmgenError(
            f"{flag} reads a condition from every document, but {others[0]} is not {what}"
        )
