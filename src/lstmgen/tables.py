"""Tables read one document per row: CSV/TSV, JSON Lines, Parquet, SQLite.

Each reader yields the text of the chosen column or field, row by row (None and empty
values as ""), so the caller can count rows it drops. Malformed rows are skipped and
counted in the Tally, or stop with an error under --strict.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import sys
from collections.abc import Iterator

from .errors import LstmgenError
from .sources import ReadOptions, Source, Tally, decoded_chunks


def _lines(chunks: Iterator[str]) -> Iterator[str]:
    """Lines with their '\\n' from text chunks; only '\\n' ends a line (other breaks are data to csv)."""
    tail = ""
    for chunk in chunks:
        parts = (tail + chunk).split("\n")
        tail = parts.pop()
        for part in parts:
            yield part + "\n"
    if tail:
        yield tail


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


def _missing(what: str, name: str, source: Source, available: list[str]) -> LstmgenError:
    shown = ", ".join(available) if available else "none"
    return LstmgenError(f"{source.name} has no {what} {name!r}; its {what}s are: {shown}")


def _malformed(source: Source, options: ReadOptions, tally: Tally, where: str, why: str) -> None:
    if options.strict:
        raise LstmgenError(f"{source.name}: malformed {where} ({why}); fix it, or drop --strict to skip and count such rows")
    tally.malformed_rows += 1


def csv_rows(source: Source, options: ReadOptions, tally: Tally) -> Iterator[str]:
    """The --column of each row of a CSV/TSV file (header row first)."""
    delimiter = options.delimiter or ("\t" if source.kind == "tsv" else ",")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a long review is a document, not an error
    with source.open_binary(tally) as stream:
        lines = _lines(decoded_chunks(stream, encoding=options.encoding, errors=options.errors, label=source.name))
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise LstmgenError(f"{source.name}: cannot read the header row ({e})") from None
        if options.column not in header:
            raise _missing("column", options.column, source, header)
        index, width = header.index(options.column), len(header)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                _malformed(source, options, tally, f"row at line {reader.line_num}", str(e))
                continue
            if len(row) != width:
                if row:  # a blank line is no row at all
                    _malformed(source, options, tally, f"row at line {reader.line_num}", f"{len(row)} fields, the header has {width}")
                continue
            yield row[index]


def _dig(record, path: list[str]):
    for key in path:
        if not isinstance(record, dict) or key not in record:
            raise KeyError(key)
        record = record[key]
    return record


def jsonl_rows(source: Source, options: ReadOptions, tally: Tally) -> Iterator[str]:
    """The --field (dotted for nested objects) of each JSON Lines record."""
    path = options.field.split(".")
    first = True
    with source.open_binary(tally) as stream:
        chunks = decoded_chunks(stream, encoding=options.encoding, errors=options.errors, label=source.name)
        for number, line in enumerate(_lines(chunks), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                _malformed(source, options, tally, f"line {number}", f"not JSON: {e.msg}")
                continue
            try:
                value = _dig(record, path)
            except KeyError as e:
                if first:  # the field was never there: say which fields exist
                    keys = _dig(record, path[: path.index(e.args[0])]) if isinstance(record, dict) else {}
                    raise _missing("field", options.field, source, sorted(keys) if isinstance(keys, dict) else []) from None
                value = None
            first = False
            if isinstance(value, (dict, list)):
                _malformed(source, options, tally, f"line {number}", f"{options.field} is not text")
                continue
            yield _text(value)


def parquet_rows(source: Source, options: ReadOptions, tally: Tally) -> Iterator[str]:
    """The --column of each row of a Parquet file, read in record batches (needs pyarrow)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise LstmgenError(f"{source.name} is a Parquet file; install the extra that reads it: pip install 'lstmgen[parquet]'") from None
    try:
        table = pq.ParquetFile(source.path)
    except Exception as e:  # pyarrow raises its own error types for a damaged file
        raise LstmgenError(f"{source.name} is not a readable Parquet file ({e})") from None
    names = table.schema_arrow.names
    column = options.column
    if column is None:
        if len(names) != 1:
            raise LstmgenError(f"{source.name} has several columns; choose the text with --column (columns: {', '.join(names)})")
        column = names[0]
    if column not in names:
        raise _missing("column", column, source, names)
    for batch in table.iter_batches(batch_size=8192, columns=[column]):
        tally.bytes_read += batch.nbytes
        for value in batch.column(0).to_pylist():
            yield _text(value)


def _quote(identifier: str) -> str:
    """An SQL identifier, quoted so that any name (spaces, quotes) is taken literally."""
    return '"' + identifier.replace('"', '""') + '"'


def sqlite_rows(source: Source, options: ReadOptions, tally: Tally) -> Iterator[str]:
    """The text of each row of --query (its first column, or --column), or of --table's --column."""
    try:
        db = sqlite3.connect(f"{source.path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise LstmgenError(f"cannot open the SQLite database {source.name} ({e})") from None
    try:
        if options.table is not None:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")]
            if options.table not in tables:
                raise _missing("table", options.table, source, tables)
            columns = [r[1] for r in db.execute(f"PRAGMA table_info({_quote(options.table)})")]
            if options.column not in columns:
                raise LstmgenError(f"table {options.table!r} of {source.name} has no column {options.column!r}; its columns are: {', '.join(columns)}")
            query = f"SELECT {_quote(options.column)} FROM {_quote(options.table)}"
        else:
            query = options.query
        try:
            cursor = db.execute(query)
        except (sqlite3.Error, sqlite3.Warning) as e:
            raise LstmgenError(f"{source.name}: SQL error: {e} (in: {query})") from None
        names = [d[0] for d in cursor.description or []]
        if not names:
            raise LstmgenError(f"{source.name}: the query returns no columns; write a SELECT that returns the text")
        index = 0
        if options.column is not None and options.table is None:
            if options.column not in names:
                raise LstmgenError(f"the query on {source.name} returns no column {options.column!r}; it returns: {', '.join(names)}")
            index = names.index(options.column)
        try:
            for row in cursor:
                yield _text(row[index])
        except sqlite3.Error as e:
            raise LstmgenError(f"{source.name}: SQL error: {e} (in: {query})") from None
    finally:
        db.close()
