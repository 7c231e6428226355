"""Tables read one document per row: CSV/TSV, JSON Lines, Parquet, SQLite.

Each reader yields the text of the chosen column or field, row by row (None and empty
values as ""), so the caller can count rows it drops; with condition columns (fields), it
yields (conditions, text) pairs, one condition value per column. Malformed rows are skipped and
counted in the Tally, or stop with an error under --strict. A line or record longer than
MAX_RECORD_CHARS is malformed too: it would otherwise be held whole in memory (a CSV with
an unterminated quote is one field to the end of the file).
"""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from collections.abc import Callable, Iterator

from lstmgen.config import ReadOptions
from lstmgen.data.reading import Source, Tally, decoded_chunks
from lstmgen.errors import LstmgenError, warn
from lstmgen.tokens.conditions import strip_reserved

# a longer line, or CSV field, is malformed (csv holds a field as 4 bytes a character)
MAX_RECORD_CHARS = 16 << 20
# JSON can escape half a UTF-16 pair, which no UTF-8 can hold
SURROGATE = re.compile("[\ud800-\udfff]")


def _lines(chunks: Iterator[str], oversized: Callable[[int], None]) -> Iterator[str]:
    """Lines with their '\\n' from text chunks; only '\\n' ends a line (other breaks are data
    to csv).

    A line longer than MAX_RECORD_CHARS is reported to oversized(its line number) and comes
    out as a bare '\\n', so that line numbers stay right; reading goes on at the next line.
    A line's pieces are joined once, when it ends (not chunk by chunk: quadratic in its length).
    """
    pieces: list[str] = []  # of the line not yet ended
    length = 0  # of pieces, or -1 while skipping an oversized line
    number = 1  # of that line
    for chunk in chunks:
        parts = chunk.split("\n")
        if len(parts) > 1:
            # pieces end with parts[0]; parts[1:-1] are whole lines (each shorter than a chunk)
            if length < 0 or length + len(parts[0]) > MAX_RECORD_CHARS:
                if length >= 0:
                    oversized(number)
                yield "\n"
            else:
                pieces.append(parts[0])
                yield "".join(pieces) + "\n"
            for part in parts[1:-1]:
                yield part + "\n"
            number += len(parts) - 1
            pieces, length = [], 0
        if length >= 0 and parts[-1]:
            pieces.append(parts[-1])
            length += len(parts[-1])
            if length > MAX_RECORD_CHARS:
                oversized(number)
                pieces, length = [], -1
    if length > 0:
        yield "".join(pieces)


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
        raise LstmgenError(
            f"{source.name}: malformed {where} ({why}); "
            "fix it, or drop --strict to skip and count such rows"
        )
    tally.malformed(source.name, f"{source.name}: {where}, {why}")


def csv_rows(source: Source, options: ReadOptions, tally: Tally) -> Iterator[str]:
    """The --column of each row of a CSV/TSV file (header row first)."""
    delimiter = options.delimiter or ("\t" if source.kind == "tsv" else ",")
    # a long review is a document; a field to the end of the file is not
    csv.field_size_limit(MAX_RECORD_CHARS)
    with source.open_binary(tally) as stream:
        lines = _lines(
            decoded_chunks(
                stream, encoding=options.encoding, errors=options.errors, label=source.name
            ),
            lambda number: _malformed(
                source,
                options,
                tally,
                f"line {number}",
                f"longer than {MAX_RECORD_CHARS:,} characters",
            ),
        )
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise LstmgenError(f"{source.name}: cannot read the header row ({e})") from None
        for name in (options.column, *options.condition_column):
            if name is not None and name not in header:
                raise _missing("column", name, source, header)
        index, width = header.index(options.column), len(header)
        label = _labeller([header.index(name) for name in options.condition_column])
        end = reader.line_num  # where the last row ended
        nul_seen = getattr(options, "strip_control", False)  # --strip-control removes them
        while True:
            try:
                for row in reader:
                    if len(row) == width:
                        if not nul_seen and "\0" in row[index]:
                            nul_seen = True
                            warn(
                                f"{source.name}: the row ending on line {reader.line_num} holds "
                                "a NUL byte (\\0), kept as a character; pass --strip-control "
                                "to drop control characters"
                            )
                        yield label(row, row[index])
                    elif row:  # a blank line is no row at all
                        _malformed_rows(
                            source,
                            options,
                            tally,
                            end + 1,
                            reader.line_num,
                            f"{len(row)} fields, the header has {width}",
                        )
                    end = reader.line_num
                return
            except csv.Error as e:
                _malformed_rows(source, options, tally, end + 1, reader.line_num, str(e))
                end = reader.line_num


def _malformed_rows(
    source: Source, options: ReadOptions, tally: Tally, start: int, end: int, why: str
) -> None:
    """A malformed CSV row; one that ran over many lines (an unterminated quote?) took them with
    it: say so."""
    _malformed(source, options, tally, f"row at line {start}", why)
    if end > start:
        warn(
            f"{source.name}: the malformed row at line {start} ran on to line {end} "
            f"({why}; an unterminated quote?): "
            f"the {end - start + 1:,} lines it spans were skipped"
        )


def _dig(record, path: list[str]):
    for key in path:
        if not isinstance(record, dict) or key not in record:
            raise KeyError(key)
        record = record[key]
    return record


def _field(record, path: list[str], name: str, source: Source, *, first: bool):
    """A record's field; missing from the first record, a one-line error naming the fields."""
    try:
        return _dig(record, path)
    except KeyError as e:
        if first:  # the field was never there: say which fields exist
            keys = _dig(record, path[: path.index(e.args[0])]) if isinstance(record, dict) else {}
            raise _missing(
                "field", name, source, sorted(keys) if isinstance(keys, dict) else []
            ) from None
        return None


def _label(value) -> str:
    """A condition value as text: 5 and "5" are one value; a missing one is empty."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(_text(value).split())


def _labeller(condition_indices: list[int]):
    """What a reader yields for a row: its text, or (conditions, text) with condition columns,
    the conditions a tuple of one value per column."""
    if not condition_indices:
        return lambda row, text: text
    return lambda row, text: (
        tuple(_label(row[i]) for i in condition_indices),
        strip_reserved(_text(text)),
    )


def jsonl_rows(source: Source, options: ReadOptions, tally: Tally) -> Iterator[str]:
    """The --field (dotted for nested objects) of each JSON Lines record."""
    path = options.field.split(".")
    conditions = [(name, name.split(".")) for name in options.condition_field]
    first = True
    with source.open_binary(tally) as stream:
        chunks = decoded_chunks(
            stream, encoding=options.encoding, errors=options.errors, label=source.name
        )

        def too_long(number: int) -> None:
            _malformed(
                source,
                options,
                tally,
                f"line {number}",
                f"longer than {MAX_RECORD_CHARS:,} characters",
            )

        for number, line in enumerate(_lines(chunks, too_long), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                _malformed(source, options, tally, f"line {number}", f"not JSON: {e.msg}")
                continue
            value = _field(record, path, options.field, source, first=first)
            labels = tuple(
                _label(_field(record, keys, name, source, first=first)) for name, keys in conditions
            )
            first = False
            if isinstance(value, (dict, list)):
                _malformed(source, options, tally, f"line {number}", f"{options.field} is not text")
                continue
            value = _text(value)
            if not value.isascii() and SURROGATE.search(value):
                if options.errors != "replace":
                    raise LstmgenError(
                        f"{source.name}: line {number}: {options.field} holds a lone surrogate "
                        "(a \\ud83d-style escape without its other half: no valid text); "
                        "fix the file, or pass --errors replace"
                    )
                value = SURROGATE.sub("\ufffd", value)
            yield (labels, strip_reserved(value)) if conditions else value


def parquet_rows(source: Source, options: ReadOptions, tally: Tally) -> Iterator[str]:
    """The --column of each row of a Parquet file, read in record batches (needs pyarrow)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise LstmgenError(
            f"{source.name} is a Parquet file; install the extra that reads it: "
            "pip install 'lstmgen[parquet]'"
        ) from None
    try:
        table = pq.ParquetFile(source.path)
    except Exception as e:  # pyarrow raises its own error types for a damaged file
        raise LstmgenError(
            f"{source.name} is not a readable Parquet file ({_one_line(e)})"
        ) from None
    names = table.schema_arrow.names
    column = options.column
    if column is None:
        if len(names) != 1:
            raise LstmgenError(
                f"{source.name} has several columns; "
                f"choose the text with --column (columns: {', '.join(names)})"
            )
        column = names[0]
    for name in (column, *options.condition_column):
        if name is not None and name not in names:
            raise _missing("column", name, source, names)
    wanted = [column, *options.condition_column]
    label = _labeller(list(range(1, len(wanted))))
    batches = table.iter_batches(batch_size=8192, columns=wanted)
    while True:
        try:
            batch = next(batches, None)
            # by name: a batch has the file's column order, not the order asked for
            columns = [batch.column(n).to_pylist() for n in wanted] if batch is not None else []
        except Exception as e:
            # pyarrow's own types (ArrowInvalid, OSError), or UnicodeDecodeError, for damaged data
            raise LstmgenError(
                f"{source.name}: cannot read the Parquet data, the file is damaged ({_one_line(e)})"
            ) from None
        if batch is None:
            return
        tally.bytes_read += batch.nbytes
        for row in zip(*columns, strict=True):
            yield label(row, _text(row[0]))


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


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
        try:  # the first read of the file: is it a (whole, unlocked) SQLite database at all?
            tables = [
                r[0]
                for r in db.execute(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name"
                )
            ]
            columns = (
                [r[1] for r in db.execute(f"PRAGMA table_info({_quote(options.table)})")]
                if options.table is not None
                else []
            )
        except sqlite3.Error as e:
            raise LstmgenError(
                f"cannot read the SQLite database {source.name} ({e}); "
                "is it a complete SQLite file, not locked by another program?"
            ) from None
        if options.table is not None:
            if options.table not in tables:
                raise _missing("table", options.table, source, tables)
            if options.column not in columns:
                raise LstmgenError(
                    f"table {options.table!r} of {source.name} has no column {options.column!r}; "
                    f"its columns are: {', '.join(columns)}"
                )
            for name in options.condition_column:
                if name not in columns:
                    raise LstmgenError(
                        f"table {options.table!r} of {source.name} has no column "
                        f"{name!r}; its columns are: {', '.join(columns)}"
                    )
            wanted = [options.column, *options.condition_column]
            query = f"SELECT {', '.join(map(_quote, wanted))} FROM {_quote(options.table)}"
        else:
            query = options.query
        try:
            cursor = db.execute(query)
        except (sqlite3.Error, sqlite3.Warning) as e:
            raise LstmgenError(f"{source.name}: SQL error: {e} (in: {query})") from None
        names = [d[0] for d in cursor.description or []]
        if not names:
            raise LstmgenError(
                f"{source.name}: the query returns no columns; write a SELECT that returns the text"
            )
        index = 0
        if options.column is not None and options.table is None:
            if options.column not in names:
                raise LstmgenError(
                    f"the query on {source.name} returns no column {options.column!r}; "
                    f"it returns: {', '.join(names)}"
                )
            index = names.index(options.column)
        for name in options.condition_column:
            if name not in names:
                raise LstmgenError(
                    f"the query on {source.name} returns no column {name!r}; "
                    f"it returns: {', '.join(names)}"
                )
        label = _labeller([names.index(name) for name in options.condition_column])
        try:
            for row in cursor:
                yield label(row, _text(row[index]))
        except sqlite3.Error as e:
            raise LstmgenError(f"{source.name}: SQL error: {e} (in: {query})") from None
    finally:
        db.close()
