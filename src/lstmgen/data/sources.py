"""Turn what the user names into streams of documents (resolve.py finds the sources).

Inputs are files, folders (recursive), globs, '-' (stdin), named corpora, compressed
files (.gz .bz2 .xz .zst, and every member of a .zip) and tables (CSV/TSV, JSON Lines,
Parquet, SQLite; see tables.py). A document is either a str (a table row, a help topic)
or, for a text file, an iterator of chunks, so a large file is never held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from lstmgen.config import ReadOptions
from lstmgen.data import tables
from lstmgen.data.corpora import NAMED_CORPORA
from lstmgen.data.reading import (
    Source,
    Tally,
    closing,
    decoded_chunks,
    open_zip,
    utf8_chunks,
)
from lstmgen.data.resolve import resolve_sources

__all__ = [
    "as_specs",
    "document_stream",
    "documents",
    "resolve_sources",
]


def as_specs(sources) -> list:
    """Sources as the API takes them (one path or name, or several, or None) as a list."""
    return [sources] if isinstance(sources, (str, Path)) else list(sources or [])


def documents(
    source: Source,
    options: ReadOptions | None = None,
    *,
    tally: Tally | None = None,
    utf8: bool = False,
) -> Iterator:
    """Yield this source's documents: a str each, or an iterator of text chunks for a text file.

    With utf8=True the chunks of a UTF-8 text file come as validated UTF-8 bytes (no decoding).
    """
    options = options or ReadOptions()
    tally = tally or Tally()
    if source.kind == "named":
        yield from NAMED_CORPORA[source.name]()
    elif source.kind in ("csv", "tsv") and options.column is not None:
        yield from tables.csv_rows(source, options, tally)
    elif source.kind == "jsonl" and options.field is not None:
        yield from tables.jsonl_rows(source, options, tally)
    elif source.kind == "parquet":
        yield from tables.parquet_rows(source, options, tally)
    elif source.kind == "sqlite":
        yield from tables.sqlite_rows(source, options, tally)
    elif utf8 and options.is_utf8:
        yield closing(
            source.open_binary(tally),
            lambda f: utf8_chunks(f, label=source.name, errors=options.errors),
        )
    else:
        yield closing(
            source.open_binary(tally),
            lambda f: decoded_chunks(
                f, encoding=options.encoding, errors=options.errors, label=source.name
            ),
        )


def document_stream(
    sources: Iterable[Source], options: ReadOptions, *, tally: Tally, utf8: bool = False
) -> Iterator[tuple[Source, object]]:
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
                    archive = open_zip(source.path)
                source = replace(source, archive=archive)
            for document in documents(source, options, tally=tally, utf8=utf8):
                yield source, document
    finally:
        if archive is not None:
            archive.close()
