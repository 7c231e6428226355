"""Settings of a token store: how sources are read (ReadOptions) and cleaned (CleanOptions),
and how the store is made (DataConfig: the separator, the held-out split, the vocabulary)."""

from __future__ import annotations

import codecs
from dataclasses import asdict, dataclass

from lstmgen.config.options import CLEANING, READING, STORE, Section, option
from lstmgen.errors import LstmgenError

LEVELS = ("char", "word", "bpe")
SPLITS = ("auto", "documents", "tail")
NORMAL_FORMS = ("nfc", "nfkc", "nfd", "nfkd")
WIDE_ENCODINGS = {"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}


@dataclass
class ReadOptions(Section):
    """How sources are read: encoding, which files, which column or field of a table."""

    encoding: str = option("utf-8", "Text encoding of the sources.", panel=READING)
    errors: str = option("strict", "On undecodable bytes: strict (stop) or replace.", panel=READING)
    include: tuple[str, ...] = option(
        help="Only files matching this glob pattern (in folders, globs, zips); repeatable.",
        panel=READING,
        factory=tuple,
    )
    exclude: tuple[str, ...] = option(
        help="Leave out files matching this glob pattern; repeatable.", panel=READING, factory=tuple
    )
    column: str | None = option(
        help="Table column holding the text (CSV/TSV, Parquet, SQLite); one document per row.",
        panel=READING,
    )
    field: str | None = option(
        help="JSON Lines field holding the text; dotted for nested (review.body).", panel=READING
    )
    condition_column: tuple[str, ...] = option(
        help="Table column whose value is each document's condition (a rating, an author), "
        "joined to the input at every step; repeatable. generate --condition COLUMN=VALUE then "
        "asks for that kind of text, and classify predicts it.",
        panel=READING,
        factory=tuple,
    )
    condition_field: tuple[str, ...] = option(
        help="JSON Lines field (dotted for nested) whose value is each document's condition; "
        "repeatable.",
        panel=READING,
        factory=tuple,
    )
    delimiter: str | None = option(
        help="CSV delimiter (\\t for tab).",
        panel=READING,
        default_text="from the extension: .csv , .tsv tab",
    )
    table: str | None = option(help="SQLite table to read --column from.", panel=READING)
    query: str | None = option(
        help="SQLite query; its first column (or --column) is the text.", panel=READING
    )
    strict: bool = option(
        False, "Stop at a malformed table row instead of skipping and counting it.", panel=READING
    )

    def __post_init__(self) -> None:
        self.include, self.exclude = tuple(self.include), tuple(self.exclude)
        self.condition_column = _names(self.condition_column)
        self.condition_field = _names(self.condition_field)
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise LstmgenError(
                f"unknown encoding {self.encoding!r}; "
                "use a Python codec name such as utf-8 or latin-1"
            ) from None
        if self.errors not in ("strict", "replace"):
            raise LstmgenError(f"--errors {self.errors!r} must be strict or replace")
        if self.delimiter is not None:
            self.delimiter = {"\\t": "\t", "tab": "\t"}.get(self.delimiter, self.delimiter)
            if len(self.delimiter) != 1:
                raise LstmgenError(
                    f"--delimiter {self.delimiter!r} must be one character (or \\t / tab)"
                )
        if self.condition_column and self.condition_field:
            raise LstmgenError(
                "give --condition-column (CSV/TSV, Parquet, SQLite) or --condition-field "
                "(JSON Lines), not both"
            )
        if self.condition_column and self.column is None and self.query is None:
            raise LstmgenError(
                f"--condition-column {self.condition_column[0]} needs --column: name the column "
                "that holds the text"
            )
        if self.condition_field and self.field is None:
            raise LstmgenError(
                f"--condition-field {self.condition_field[0]} needs --field: name the field that "
                "holds the text"
            )
        if self.table is not None and self.query is not None:
            raise LstmgenError("give either --query or --table/--column for SQLite, not both")
        if self.table is not None and self.column is None:
            raise LstmgenError(
                f"--table {self.table} needs --column: name the column that holds the text"
            )

    @property
    def conditions(self) -> tuple[str, ...]:
        """The columns or fields holding each document's conditions (none: unconditioned)."""
        return self.condition_column or self.condition_field

    @property
    def is_utf8(self) -> bool:
        return codecs.lookup(self.encoding).name == "utf-8"

    @property
    def is_wide(self) -> bool:
        """UTF-16/32: their ASCII text is half NUL bytes, so the binary sniff does not apply."""
        return codecs.lookup(self.encoding).name in WIDE_ENCODINGS


@dataclass
class CleanOptions(Section):
    """Opt-in cleaning, applied in this order to every document."""

    strip_html: bool = option(
        False,
        "Drop HTML tags (<br />, <p> become line breaks), unescape &amp; etc.",
        panel=CLEANING,
    )
    normalize: str | None = option(
        help="Unicode normal form: nfkc, nfc, nfkd or nfd.", panel=CLEANING
    )  # nfkc folds ligatures
    lower: bool = option(False, "Lower-case all text.", panel=CLEANING)  # fewer symbols to learn
    strip_control: bool = option(
        False, "Remove control characters other than tab and newline.", panel=CLEANING
    )
    collapse_whitespace: bool = option(
        False,
        "Runs of spaces become one, no spaces at line ends, at most one blank line.",
        panel=CLEANING,
    )
    min_chars: int = option(0, "Drop documents shorter than this (after cleaning).", panel=CLEANING)
    # --dedupe keeps an 8-byte hash (12-24 bytes of memory) per distinct document.
    dedupe: bool = option(False, "Drop documents identical to an earlier one.", panel=CLEANING)

    def __post_init__(self) -> None:
        if self.normalize is not None:
            self.normalize = self.normalize.lower()
            if self.normalize not in NORMAL_FORMS:
                raise LstmgenError(
                    f"--normalize {self.normalize} must be one of {', '.join(NORMAL_FORMS)}"
                )
        if self.min_chars < 0:
            raise LstmgenError(f"--min-chars {self.min_chars} must be 0 or more")

    @property
    def cleans_text(self) -> bool:
        return bool(
            self.strip_html
            or self.normalize
            or self.lower
            or self.strip_control
            or self.collapse_whitespace
        )

    def cleaning(self) -> dict:
        names = (
            "strip_html",
            "normalize",
            "lower",
            "strip_control",
            "collapse_whitespace",
            "min_chars",
            "dedupe",
        )
        return {k: getattr(self, k) for k in names}


@dataclass
class DataConfig(CleanOptions, ReadOptions):
    """What decides a token store: how sources are read and cleaned, the vocabulary, the split."""

    # Written between documents, so the model learns where one ends.
    doc_separator: str = option(
        "\n\n", "Written between documents (\\n for a newline).", panel=STORE, default_text="\\n\\n"
    )
    val_fraction: float = option(
        0.1, "Share of the characters held out for validation.", panel=STORE
    )
    split: str = option(
        "auto",
        "Held out: documents (whole ones, spread over the corpus), tail (the end of the "
        "text), or auto: documents when the held-out share holds 4 of the largest, or when "
        "there are 20 or more documents (files, rows) and none is larger than the share; "
        "else the tail. prepare's last line says which.",
        panel=STORE,
    )
    max_vocab: int | None = option(
        help="Keep only the most frequent characters (words), the unknown token included.",
        panel=STORE,
        default_text="all characters; 20000 words",
    )
    min_count: int = option(
        1, "Characters (words) seen fewer times become the unknown token.", panel=STORE
    )
    # A value with fewer documents is too rare to learn a token for; such values share one.
    min_condition_count: int = option(
        10,
        "Condition values with fewer documents share one <other> condition.",
        panel=STORE,
    )
    level: str = option(
        "char",
        "What a token is: char, word (words, punctuation, newlines) or bpe (byte-level subwords).",
        panel=STORE,
    )
    vocab_size: int = option(4096, "Subword pieces of --level bpe.", panel=STORE)

    def __post_init__(self) -> None:
        ReadOptions.__post_init__(self)
        CleanOptions.__post_init__(self)
        self.doc_separator = self.doc_separator.replace("\\n", "\n").replace("\\t", "\t")
        if not 0 < self.val_fraction < 1:
            raise LstmgenError(
                f"--val-fraction {self.val_fraction} must be between 0 and 1 (e.g. 0.1)"
            )
        if self.split not in SPLITS:
            raise LstmgenError(f"--split {self.split} must be one of {', '.join(SPLITS)}")
        if self.max_vocab is not None and self.max_vocab < 2:
            raise LstmgenError(
                f"--max-vocab {self.max_vocab} must be at least 2 "
                "(the unknown character and one more)"
            )
        if self.min_count < 1:
            raise LstmgenError(f"--min-count {self.min_count} must be 1 or more")
        if self.min_condition_count < 1:
            raise LstmgenError(
                f"--min-condition-count {self.min_condition_count} must be 1 or more"
            )
        if self.conditions and self.split == "tail":
            raise LstmgenError(
                "--split tail cuts a document in two; with conditions the held-out text is "
                "whole documents (drop --split tail)"
            )
        if self.level not in LEVELS:
            raise LstmgenError(f"--level {self.level!r} must be one of {', '.join(LEVELS)}")
        if self.level == "bpe" and self.vocab_size < 257:
            raise LstmgenError(
                f"--vocab-size {self.vocab_size} must be at least 257 "
                "(the 256 bytes and the reserved unknown token)"
            )

    def reading(self) -> dict:
        """The reading options meta.json records (encoding and errors have keys of their own)."""
        names = ReadOptions.option_names() - {"encoding", "errors"}
        conditions = {"condition_column", "condition_field"}  # recorded only when given
        return {
            k: list(v) if k in conditions else v
            for k, v in asdict(self).items()
            if k in names and (k not in conditions or v)
        }


def _names(given) -> tuple[str, ...]:
    """Condition columns (fields) as a tuple of distinct names; one name may come as a str."""
    names = (given,) if isinstance(given, str) else tuple(given or ())
    if len(set(names)) != len(names):
        raise LstmgenError(f"a condition column is named twice: {', '.join(names)}")
    return names
