"""Preparation end to end: every source kind, cleaning, the document split, vocabulary limits,
bad input."""

import bz2
import csv
import gzip
import hashlib
import importlib.util
import json
import lzma
import shutil
import sqlite3
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import lstmgen
from conftest import SHARED_DATA, make_text
from lstmgen.config import CleanOptions
from lstmgen.config import DataConfig as PrepareConfig
from lstmgen.data.clean import Cleaner
from lstmgen.data.sources import documents as source_documents
from lstmgen.data.sources import resolve_sources
from lstmgen.data.store import TokenStore
from lstmgen.errors import LstmgenError
from lstmgen.tokens import load_tokenizer
from test_cli import run_cli

REVIEWS = [
    "Great coffee, <b>loved</b> it.<br />Would buy again.",
    "Too sweet &amp; too small.",
    "Meh.\nIt was fine, really.",
]


def documents(tmp_path, specs, **options):
    config = PrepareConfig(**options)
    sources = resolve_sources([str(s) for s in specs], spool_dir=tmp_path / "spool", options=config)
    return ["".join(doc) for source in sources for doc in source_documents(source, config)]


def store_text(out: Path) -> tuple[str, str]:
    tokenizer = load_tokenizer(out / "tokenizer.json")
    store = TokenStore.open(out)
    return tokenizer.decode(store.train), tokenizer.decode(store.val)


def write_csv(path: Path, rows, delimiter=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(["id", "Text"])
        writer.writerows([i, text] for i, text in enumerate(rows))


# ---- sources -------------------------------------------------------------------------


def test_compressed_files_and_zip_members(tmp_path):
    text = "é and plain text\r\nsecond line"
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "b.txt.bz2").write_bytes(bz2.compress(b"bzip two"))
    (tmp_path / "c.txt.xz").write_bytes(lzma.compress(b"xz three"))
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as archive:
        archive.writestr("one.txt", "zip one")
        archive.writestr("sub/two.md", "zip two")
        archive.writestr("image.png", b"\x89PNG\0\0binary")
        archive.writestr("rows.csv.gz", gzip.compress(b"id,Text\n1,zipped row\n"))
    docs = documents(
        tmp_path, [tmp_path / n for n in ("a.txt.gz", "b.txt.bz2", "c.txt.xz", "d.zip")]
    )
    assert docs == [
        "é and plain text\nsecond line",
        "bzip two",
        "xz three",
        "zip one",
        "zip two",
        "id,Text\n1,zipped row\n",
    ]
    assert documents(tmp_path, [tmp_path / "d.zip"], column="Text") == [
        "zip one",
        "zip two",
        "zipped row",
    ]


def test_zstd(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    (tmp_path / "t.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(b"zstd text"))
    assert documents(tmp_path, [tmp_path / "t.txt.zst"]) == ["zstd text"]


def test_missing_optional_libraries_name_the_extra(tmp_path, monkeypatch):
    (tmp_path / "t.txt.zst").write_bytes(b"(\xb5/\xfd not really")
    (tmp_path / "t.parquet").write_bytes(b"PAR1 not really")
    monkeypatch.setitem(sys.modules, "zstandard", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(LstmgenError, match=r"pip install 'lstmgen\[zstd\]'"):
        documents(tmp_path, [tmp_path / "t.txt.zst"])
    with pytest.raises(LstmgenError, match=r"pip install 'lstmgen\[parquet\]'"):
        documents(tmp_path, [tmp_path / "t.parquet"], column="text")


def test_globs_include_exclude(tmp_path):
    for name in ("a.txt", "b.md", "notes/c.txt", "notes/skip.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(name)
    assert documents(tmp_path, [tmp_path], include=["*.txt"], exclude=["skip*"]) == [
        "a.txt",
        "notes/c.txt",
    ]
    assert documents(tmp_path, [f"{tmp_path}/**/*.txt"]) == [
        "a.txt",
        "notes/c.txt",
        "notes/skip.txt",
    ]
    with pytest.raises(LstmgenError, match="matches no files"):
        documents(tmp_path, [f"{tmp_path}/*.rst"])


def test_csv_tsv_quoting_newlines_and_malformed_rows(tmp_path):
    write_csv(tmp_path / "r.csv", REVIEWS)
    assert documents(tmp_path, [tmp_path / "r.csv"], column="Text") == REVIEWS
    write_csv(tmp_path / "r.tsv", REVIEWS, delimiter="\t")
    assert documents(tmp_path, [tmp_path / "r.tsv"], column="Text") == REVIEWS
    (tmp_path / "semi.txt.csv").write_text('Text;n\n"a;b";1\n', encoding="utf-8")
    assert documents(tmp_path, [tmp_path / "semi.txt.csv"], column="Text", delimiter=";") == ["a;b"]
    (tmp_path / "bad.csv").write_text(
        'id,Text\n1,good\n2,"bad"quote\n3,too,many\n4,"fine, too"\n', encoding="utf-8"
    )
    config = PrepareConfig(column="Text")
    from lstmgen.data.reading import Tally

    tally = Tally()
    source = resolve_sources([str(tmp_path / "bad.csv")], spool_dir=tmp_path, options=config)[0]
    assert (
        list(source_documents(source, config, tally=tally)) == ["good", "fine, too"]
        and tally.malformed_rows == 2
    )
    with pytest.raises(LstmgenError, match="malformed row at line 3"):
        documents(tmp_path, [tmp_path / "bad.csv"], column="Text", strict=True)


def test_jsonl_dotted_fields(tmp_path):
    lines = [
        {"review": {"body": "first"}},
        {"review": {"body": "second"}},
        "not an object",
        {"review": {"title": "none"}},
    ]
    (tmp_path / "r.jsonl").write_text(
        "\n".join(json.dumps(x) for x in lines) + "\n{broken\n", encoding="utf-8"
    )
    assert documents(tmp_path, [tmp_path / "r.jsonl"], field="review.body") == [
        "first",
        "second",
        "",
        "",
    ]
    with pytest.raises(LstmgenError, match=r"no field 'review.text'; its fields are: body"):
        documents(tmp_path, [tmp_path / "r.jsonl"], field="review.text")


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": [1, 2, 3], "Text": REVIEWS}), tmp_path / "r.parquet")
    assert documents(tmp_path, [tmp_path / "r.parquet"], column="Text") == REVIEWS
    with pytest.raises(LstmgenError, match="no column 'text'; its columns are: id, Text"):
        documents(tmp_path, [tmp_path / "r.parquet"], column="text")


def test_sqlite_query_and_table(tmp_path):
    db = tmp_path / "r.db"
    with sqlite3.connect(db) as connection:
        connection.execute('CREATE TABLE "my reviews" (id INTEGER, "the text" TEXT, score INTEGER)')
        connection.executemany(
            'INSERT INTO "my reviews" VALUES (?, ?, ?)', [(i, t, i) for i, t in enumerate(REVIEWS)]
        )
    connection.close()
    assert (
        documents(tmp_path, [db], query='SELECT "the text" FROM "my reviews" WHERE score > 0')
        == REVIEWS[1:]
    )
    assert documents(tmp_path, [db], table="my reviews", column="the text") == REVIEWS
    with pytest.raises(LstmgenError, match="no such column: txt"):
        documents(tmp_path, [db], query='SELECT txt FROM "my reviews"')
    with pytest.raises(LstmgenError, match="no table 'reviews'; its tables are: my reviews"):
        documents(tmp_path, [db], table="reviews", column="x")
    with pytest.raises(LstmgenError, match="its columns are: id, the text, score"):
        documents(tmp_path, [db], table="my reviews", column='x" FROM sqlite_master; --')


def test_zip_archive_is_opened_once_per_pass_not_per_member(tmp_path, monkeypatch):
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as archive:
        for i in range(6):
            archive.writestr(f"m{i}.txt", f"member {i} " * 20)
    opened = []

    class CountingZipFile(zipfile.ZipFile):
        def __init__(self, file, *args, **kwargs):
            opened.append(file)
            super().__init__(file, *args, **kwargs)

    monkeypatch.setattr(zipfile, "ZipFile", CountingZipFile)
    meta = lstmgen.prepare([tmp_path / "many.zip"], out=tmp_path / "s", split="tail", quiet=True)
    assert meta["documents"] == 6 and "".join(store_text(tmp_path / "s")).count("member 5") == 20
    assert len(opened) == 3  # finding the members, counting, encoding


def test_jsonl_lone_surrogate_is_an_error_or_replaced(tmp_path):
    (tmp_path / "r.jsonl").write_text(
        '{"text": "whole \\ud83d\\ude00"}\n{"text": "cut \\ud83d"}\n', encoding="utf-8"
    )
    with pytest.raises(LstmgenError, match=r"r.jsonl: line 2: .*lone surrogate.*--errors replace"):
        documents(tmp_path, [tmp_path / "r.jsonl"], field="text")
    assert documents(tmp_path, [tmp_path / "r.jsonl"], field="text", errors="replace") == [
        "whole 😀",
        "cut \ufffd",
    ]


def test_long_lines_and_runaway_csv_quotes_are_malformed_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("lstmgen.data.tables.MAX_RECORD_CHARS", 40)
    monkeypatch.setattr("lstmgen.data.reading.CHUNK_BYTES", 8)  # a line in many chunks
    (tmp_path / "r.jsonl").write_text(
        '{"t": "first"}\n{"t": "' + "x" * 60 + '"}\n{"t": "' + "y" * 30 + '"}\n{"t": "last"}',
        encoding="utf-8",
    )
    config = PrepareConfig(field="t")
    from lstmgen.data.reading import Tally

    tally = Tally()
    source = resolve_sources([str(tmp_path / "r.jsonl")], spool_dir=tmp_path, options=config)[0]
    assert (
        list(source_documents(source, config, tally=tally)) == ["first", "y" * 30, "last"]
        and tally.malformed_rows == 1
    )
    with pytest.raises(LstmgenError, match="r.jsonl: malformed line 2 .longer than 40 characters"):
        documents(tmp_path, [tmp_path / "r.jsonl"], field="t", strict=True)
    # An unterminated quote runs on into a field of the following lines: one malformed row, and
    # a warning.
    (tmp_path / "r.csv").write_text(
        'id,Text\n1,good\n2,"runaway\n3,lost\n4,lost too\n', encoding="utf-8"
    )
    config = PrepareConfig(column="Text")
    tally = Tally()
    source = resolve_sources([str(tmp_path / "r.csv")], spool_dir=tmp_path, options=config)[0]
    assert (
        list(source_documents(source, config, tally=tally)) == ["good"]
        and tally.malformed_rows == 1
    )
    assert "malformed row at line 3 ran on to line 5" in capsys.readouterr().err
    (tmp_path / "long.csv").write_text(
        "id,Text\n" + "".join(f'{i},"{"z" * 9}\n' for i in range(8)) + '9,"fine"\n',
        encoding="utf-8",
    )
    assert documents(tmp_path, [tmp_path / "long.csv"], column="Text")[-1:] == [
        "fine"
    ]  # reading resumes after the cap


def test_byte_order_marks_and_utf16_text(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("lstmgen.data.reading.CHUNK_BYTES", 2)  # the mark cut between chunks
    bom = "\ufeff".encode()
    (tmp_path / "excel.csv").write_bytes(bom + b"Text,n\r\nfirst,1\r\nsecond,2\r\n")
    assert documents(tmp_path, [tmp_path / "excel.csv"], column="Text") == ["first", "second"]
    (tmp_path / "r.jsonl").write_bytes(bom + b'{"t": "first"}\n{"t": "second"}\n')
    assert documents(tmp_path, [tmp_path / "r.jsonl"], field="t") == ["first", "second"]
    (tmp_path / "t.txt").write_bytes(bom + b"plain text, text")  # "xt" held out, also in training
    assert documents(tmp_path, [tmp_path / "t.txt"]) == ["plain text, text"]
    lstmgen.prepare(
        [tmp_path / "t.txt"], out=tmp_path / "s", quiet=True
    )  # the undecoded UTF-8 path
    assert "".join(store_text(tmp_path / "s")) == "plain text, text"
    (tmp_path / "wide").mkdir()
    (tmp_path / "wide" / "u16.txt").write_text(
        "wide text", encoding="utf-16"
    )  # with a byte-order mark
    (tmp_path / "wide" / "u32.txt").write_bytes("wider text".encode("utf-32-le"))
    assert documents(tmp_path, [tmp_path / "wide" / "u16.txt"], encoding="utf-16") == ["wide text"]
    assert documents(tmp_path, [tmp_path / "wide" / "u32.txt"], encoding="utf-32-le") == [
        "wider text"
    ]
    with pytest.raises(LstmgenError, match="u16.txt: it is UTF-16 text .*; pass --encoding utf-16"):
        documents(tmp_path, [tmp_path / "wide" / "u16.txt"])
    with pytest.raises(LstmgenError, match="has no text files"):
        documents(tmp_path, [tmp_path / "wide"])
    assert "skipping" in capsys.readouterr().err


def _damaged(data: bytes, at: int) -> bytes:
    return data[:at] + bytes(b ^ 0x5A for b in data[at : at + 8]) + data[at + 8 :]


def test_damaged_files_are_one_line_errors(tmp_path):
    import random

    rng = random.Random(0)
    text = bytes(rng.choice(b"abcdefghij \n") for _ in range(20000))
    (tmp_path / "a.txt.gz").write_bytes(_damaged(gzip.compress(text), 3000))
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress(text)[:-50])
    (tmp_path / "c.txt.bz2").write_bytes(_damaged(bz2.compress(text), 3000))
    (tmp_path / "d.txt.xz").write_bytes(_damaged(lzma.compress(text), 3000))
    (tmp_path / "e.txt.zst").write_bytes(b"(\xb5/\xfd" + b"\0not zstd" * 50)
    with zipfile.ZipFile(tmp_path / "f.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("member.txt", text)
    (tmp_path / "f.zip").write_bytes(_damaged((tmp_path / "f.zip").read_bytes(), 3000))
    (tmp_path / "g.db").write_bytes(b"not a database " * 100)
    cases = [
        ("a.txt.gz", {}),
        ("b.txt.gz", {}),
        ("c.txt.bz2", {}),
        ("d.txt.xz", {}),
        ("f.zip", {}),
        ("g.db", {"table": "t", "column": "c"}),
        ("g.db", {"query": "SELECT 1"}),
    ]
    if importlib.util.find_spec("zstandard"):
        cases.append(("e.txt.zst", {}))
    if importlib.util.find_spec("pyarrow"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"Text": REVIEWS}), tmp_path / "h.parquet")
        data = (tmp_path / "h.parquet").read_bytes()
        (tmp_path / "h.parquet").write_bytes(
            data[:4] + b"\xff" * 4 + data[8:]
        )  # the first page header
        cases.append(("h.parquet", {"column": "Text"}))
    for name, options in cases:
        with pytest.raises(LstmgenError) as error:
            lstmgen.prepare([tmp_path / name], out=tmp_path / "s", quiet=True, **options)
        message = str(error.value)
        assert (
            name in message
            and "\n" not in message
            and ("damaged" in message or "not a database" in message)
        ), message
        assert not (tmp_path / "s").exists()


def test_compact_document_sets():
    from lstmgen.data.docsets import DocumentBits, HashSet, text_hash

    dropped = DocumentBits()
    for n in (0, 9, 10_000):
        dropped.add(n)
    assert [n for n in range(10_001) if n in dropped] == [0, 9, 10_000] and len(
        dropped.bits
    ) == 1251
    seen = HashSet()
    hashes = [text_hash(f"review {i}") for i in range(20_000)]
    assert (
        all(seen.add(h) for h in hashes)
        and not any(seen.add(h) for h in hashes[::7])
        and not seen.add(text_hash("review 3"))
    )
    assert len(seen) == 20_000 and seen.nbytes <= 24 * 20_000 and seen.add(0) and not seen.add(0)


# ---- cleaning ------------------------------------------------------------------------


ALL_CLEANING = {"collapse_whitespace": True, "strip_html": True, "strip_control": True}


@pytest.mark.parametrize(
    "options,text,cleaned",
    [
        ({"strip_html": True}, "a<br />b &amp; <i>c</i>&lt;d&gt;", "a\nb & c<d>"),
        ({"normalize": "nfkc"}, "ﬁne ＡＢ e\u0301", "fine AB é"),
        ({"lower": True}, "MiXeD", "mixed"),
        ({"strip_control": True}, "a\x00b\x1bc\td\n", "abc\td\n"),
        ({"collapse_whitespace": True}, "  a \t b  \n\n\n\n c  ", "a b\n\nc"),
        ({"collapse_whitespace": True}, "   \n \t ", ""),
        # Cleaning makes whitespace (<br>, &nbsp;) and removes what kept it apart (control
        # characters).
        (ALL_CLEANING, "a&nbsp; b", "a b"),
        (ALL_CLEANING, "a<br><br><br>b", "a\n\nb"),
        (ALL_CLEANING, "abc<br>", "abc"),
        (ALL_CLEANING, "<p> x \x00 \x01\ty </p>\x00", "x y"),
        (
            ALL_CLEANING,
            " &nbsp;<br>\x07 <br /> lines\x00 <br>\n \x1b<br>end &amp; <b>bold</b>\t",
            "lines\n\nend & bold",
        ),
    ],
)
def test_cleaning_flags_whole_and_in_chunks(options, text, cleaned):
    cleaner = Cleaner(CleanOptions(**options))
    assert cleaner.text(text) == cleaned
    for size in range(1, 6):  # a chunked document is cleaned the same, however it is cut
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        assert "".join(cleaner.chunks(chunks)) == cleaned, size


def test_min_chars_dedupe_and_nothing_left(tmp_path):
    write_csv(
        tmp_path / "r.csv",
        ["short", "a long enough review", "a long enough review", "", "another long review"],
    )
    meta = lstmgen.prepare(
        [tmp_path / "r.csv"],
        out=tmp_path / "s",
        column="Text",
        min_chars=6,
        dedupe=True,
        split="tail",
        quiet=True,
    )
    assert meta["counts"] | {} == {
        **meta["counts"],
        "documents": 2,
        "dropped_short_or_empty": 2,
        "duplicates": 1,
    }
    assert "".join(store_text(tmp_path / "s")) == "a long enough review\n\nanother long review"
    with pytest.raises(LstmgenError, match="yields no documents after cleaning"):
        lstmgen.prepare(
            [tmp_path / "r.csv"], out=tmp_path / "t", column="Text", min_chars=100, quiet=True
        )
    assert not (tmp_path / "t").exists()


# ---- the store -----------------------------------------------------------------------


def test_held_out_documents_are_whole_and_never_in_training(tmp_path):
    rows = [f"review {i:04d}: " + "good " * (i % 7 + 3) for i in range(300)]
    write_csv(tmp_path / "r.csv", rows)
    meta = lstmgen.prepare([tmp_path / "r.csv"], out=tmp_path / "s", column="Text", quiet=True)
    train, val = store_text(tmp_path / "s")
    held_out = val.split("\n\n")
    assert meta["split"] == "documents" and meta["val_documents"] == len(held_out) > 20
    assert all(doc in rows and doc not in train for doc in held_out)
    assert sorted(train.split("\n\n") + held_out) == sorted(rows)
    assert 0.08 < len(val) / (len(train) + len(val)) < 0.12
    meta = lstmgen.prepare(
        [tmp_path / "r.csv"],
        out=tmp_path / "s",
        column="Text",
        split="tail",
        overwrite=True,
        quiet=True,
    )
    assert meta["split"] == "tail" and "".join(store_text(tmp_path / "s")) == "\n\n".join(rows)


def test_single_text_is_split_at_its_tail_and_fast_path_matches(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "lstmgen.data.reading.CHUNK_BYTES", 7
    )  # multi-byte characters and CRLF cut between chunks
    text = "Grüße, “quotes” — 🙂 emoji\r\nline two\r\n" * 40
    (tmp_path / "t.txt").write_bytes(text.encode())
    meta = lstmgen.prepare([tmp_path / "t.txt"], out=tmp_path / "s", quiet=True)
    train, val = store_text(tmp_path / "s")
    assert meta["split"] == "tail" and train + val == text.replace("\r\n", "\n")
    assert meta["vocab_size"] == len(set(text.replace("\r", ""))) + 1


def test_max_vocab_and_min_count_map_rare_characters_to_unknown(tmp_path):
    (tmp_path / "t.txt").write_text("aaaaabbbbcccdde" * 20 + "xyz", encoding="utf-8")
    meta = lstmgen.prepare([tmp_path / "t.txt"], out=tmp_path / "v", max_vocab=3, quiet=True)
    assert load_tokenizer(tmp_path / "v" / "tokenizer.json").chars == ["a", "b"]
    assert (
        meta["vocabulary"]["chars_seen"] == 8 and meta["counts"]["unknown_characters"] == 20 * 6 + 3
    )
    assert meta["vocab_size"] == 3 and store_text(tmp_path / "v")[1].endswith("\ufffd" * 7)
    # Counted in the training text (the first 273 characters): d is there 36 times of its 40.
    lstmgen.prepare([tmp_path / "t.txt"], out=tmp_path / "m", min_count=40, quiet=True)
    assert load_tokenizer(tmp_path / "m" / "tokenizer.json").chars == ["a", "b", "c"]


@pytest.mark.parametrize("split", ["tail", "documents"])
def test_a_character_only_the_held_out_text_has_is_unknown(tmp_path, split):
    """The char vocabulary is fitted on the training text alone, like word and BPE ones."""
    folder = tmp_path / "docs"
    folder.mkdir()
    if split == "tail":
        (folder / "a.txt").write_text("abc de\n" * 200 + "ab Ωc ⅞\n" * 10, encoding="utf-8")
    else:  # the second document is the first held out
        for i in range(20):
            text = "ab Ωc ⅞\n" * 10 if i == 1 else "abc de\n" * 20
            (folder / f"doc{i:02}.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "store"
    meta = lstmgen.prepare([folder], out=out, split=split, quiet=True)
    tok = load_tokenizer(out / "tokenizer.json")
    assert meta["split"] == split and tok.chars == sorted("abcde\n ")
    assert meta["vocab_size"] == 8 and meta["vocabulary"]["chars_seen"] == 9
    assert meta["counts"]["unknown_characters"] == meta["counts"]["unknown_tokens"] == 20
    train, val = store_text(out)
    assert "\ufffd" not in train and val.count("ab \ufffdc \ufffd\n") == 10
    assert (
        TokenStore.open(out).val.dtype == np.uint8 and len(train) + len(val) == meta["characters"]
    )


@pytest.mark.parametrize("level", ["word", "bpe"])
def test_word_and_bpe_stores_do_not_depend_on_where_the_text_is_cut(tmp_path, monkeypatch, level):
    """Pieces are cut before a space or newline after a word, where a token always ends."""
    text = make_text(30_000).replace(" red ", "  red\t").replace(".\n", ". \n")
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    options = {"level": level, "vocab_size": 300, "quiet": True}
    lstmgen.prepare([tmp_path / "t.txt"], out=tmp_path / "whole", **options)
    monkeypatch.setattr("lstmgen.data.reading.CHUNK_BYTES", 101)
    monkeypatch.setattr("lstmgen.data.levels.TextEncoder.flush_length", 97)
    lstmgen.prepare([tmp_path / "t.txt"], out=tmp_path / "cut", **options)
    for name in ("train.bin", "val.bin", "tokenizer.json"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "cut" / name).read_bytes()


def test_the_char_store_is_rewritten_only_when_the_vocabulary_changes(tmp_path, monkeypatch):
    def refuse(*args):
        raise AssertionError("rewritten")

    monkeypatch.setattr("lstmgen.data.levels.remap_splits", refuse)
    (tmp_path / "t.txt").write_text("abc de\n" * 300, encoding="utf-8")
    meta = lstmgen.prepare([tmp_path / "t.txt"], out=tmp_path / "s", quiet=True)
    assert meta["vocab_size"] == 8 and meta["counts"]["unknown_characters"] == 0


def test_interrupted_prepare_leaves_nothing_train_accepts(tmp_path, monkeypatch, capsys):
    (tmp_path / "t.txt").write_text("some text to prepare " * 500, encoding="utf-8")

    def interrupt(self, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr("lstmgen.data.splits.SplitWriter.flush", interrupt)
    with pytest.raises(KeyboardInterrupt):
        lstmgen.prepare([tmp_path / "t.txt"], out=tmp_path / "s", quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]
    # A store killed before its meta.json was written (kill -9) is refused, not trained on.
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / "train.bin").write_bytes(b"\1\2\3")
    code, _, err = run_cli(["train", tmp_path / "killed", "--out", tmp_path / "run"], capsys)
    assert code == 2 and "is an incomplete token store" in err
    with pytest.raises(LstmgenError, match="not a prepared token store"):
        TokenStore.open(tmp_path / "killed")


# ---- the command ---------------------------------------------------------------------


def test_prepare_then_train_on_the_store(tmp_path, capsys):
    rows = [f"Review {i}: the cat sat on the mat and it was good." for i in range(200)]
    write_csv(tmp_path / "r.csv", rows)
    code, _, err = run_cli(
        ["prepare", tmp_path / "r.csv", "--column", "Text", "--out", tmp_path / "store"], capsys
    )
    assert code == 0 and "prepared 200 documents" in err and "whole documents" in err
    flags = [
        "--hidden",
        "16",
        "--embedding",
        "8",
        "--layers",
        "1",
        "--batch-size",
        "2",
        "--seq-len",
        "8",
        "--max-steps",
        "2",
        "-q",
    ]
    code, _, err = run_cli(["train", tmp_path / "store", "--out", tmp_path / "run", *flags], capsys)
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["split"] == "documents" and config["data"]["documents"] == 200
    assert (tmp_path / "run" / "data" / "train.bin").read_bytes() == (
        tmp_path / "store" / "train.bin"
    ).read_bytes()


def test_bad_inputs_one_line_exit_2_nothing_written(tmp_path, capsys):
    write_csv(tmp_path / "r.csv", REVIEWS)
    (tmp_path / "r.db").write_bytes(b"")
    with sqlite3.connect(tmp_path / "real.db") as connection:
        connection.execute("CREATE TABLE t (x TEXT)")
    connection.close()
    (tmp_path / "latin.csv").write_bytes("id,Text\n1,caf\xe9\n".encode("latin-1"))
    (tmp_path / "bad.csv").write_text('id,Text\n1,"a"b\n', encoding="utf-8")
    out = tmp_path / "out"
    cases = [
        (["--column", "Txt"], "has no column 'Txt'; its columns are: id, Text"),
        (["--column", "Text", "--min-chars", "1000"], "yields no documents after cleaning"),
        (["--field", "text"], "no source is JSON Lines"),
        (
            [
                "--column",
                "Text",
                "--strict",
                "--sqlite",
                tmp_path / "real.db",
                "--query",
                "SELEC x",
            ],
            'SQL error: near "SELEC"',
        ),
        (["--column", "Text", "--normalize", "nfx"], "--normalize nfx must be one of"),
        (["--column", "Text", "--split", "halves"], "--split halves must be one of"),
        (["--column", "Text", "--max-vocab", "1"], "--max-vocab 1 must be at least 2"),
        (["--column", "Text", "--delimiter", ";;"], "must be one character"),
    ]
    for extra, fragment in cases:
        code, _, err = run_cli(["prepare", tmp_path / "r.csv", "--out", out, *extra], capsys)
        assert (
            code == 2
            and err.count("lstmgen: error:") == 1
            and fragment in err
            and "Traceback" not in err
        ), (extra, err)
        assert not out.exists() and not list(tmp_path.glob(".out*")), extra
    for source, extra, fragment in [
        (
            tmp_path / "latin.csv",
            ["--column", "Text"],
            "latin.csv: invalid utf-8 at byte offset 13",
        ),
        (tmp_path / "bad.csv", ["--column", "Text", "--strict"], "malformed row at line 2"),
        (tmp_path / "real.db", [], "is a SQLite database; say what to read with --query"),
    ]:
        code, _, err = run_cli(["prepare", source, "--out", out, *extra], capsys)
        assert code == 2 and fragment in err, (source, err)
        assert not out.exists()
    run_cli(["prepare", tmp_path / "r.csv", "--column", "Text", "--out", out, "-q"], capsys)
    code, _, err = run_cli(
        ["prepare", tmp_path / "r.csv", "--column", "Text", "--out", out], capsys
    )
    assert code == 2 and "already holds a token store; pass --overwrite" in err
    code, _, err = run_cli(["train", out, "--out", tmp_path / "run", "--lower"], capsys)
    assert code == 2 and "already prepared token store; --lower apply when preparing" in err
    code, _, err = run_cli(["prepare", out, "--out", tmp_path / "again"], capsys)
    assert (
        code == 2
        and f"{out} is already a prepared token store; train on it directly: "
        f"lstmgen train {out} --out RUN"
        in err
    )
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text(
        "a text in a folder beside a store " * 10, encoding="utf-8"
    )
    shutil.copytree(out, tmp_path / "folder" / "store")
    meta = lstmgen.prepare([tmp_path / "folder"], out=tmp_path / "again", quiet=True)
    assert (
        meta["sources"] == [str(tmp_path / "folder" / "notes.txt")]
        and "a prepared token store, not text" in capsys.readouterr().err
    )


# ---- the shared Amazon sample ----------------------------------------------------------


@pytest.mark.shared_data
def test_amazon_reviews_as_csv_sqlite_and_jsonl_give_the_same_store(tmp_path):
    csv_path = SHARED_DATA / "amazon_reviews_sample.csv"
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = [row["Text"].replace("\r\n", "\n") for row in csv.DictReader(f)]
    with sqlite3.connect(tmp_path / "reviews.db") as connection:
        connection.execute("CREATE TABLE reviews (id INTEGER PRIMARY KEY, Text TEXT)")
        connection.executemany("INSERT INTO reviews (Text) VALUES (?)", [(r,) for r in rows])
    connection.close()
    with open(tmp_path / "reviews.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"review": {"Text": r}}) + "\n" for r in rows)
    stores = {
        "csv": ([csv_path], {"column": "Text"}),
        "sqlite": ([tmp_path / "reviews.db"], {"query": "SELECT Text FROM reviews ORDER BY id"}),
        "jsonl": ([tmp_path / "reviews.jsonl"], {"field": "review.Text"}),
    }
    digests = {}
    for name, (sources, options) in stores.items():
        meta = lstmgen.prepare(sources, out=tmp_path / name, strip_html=True, quiet=True, **options)
        digests[name] = [
            hashlib.sha256((tmp_path / name / f).read_bytes()).hexdigest()
            for f in ("train.bin", "val.bin", "tokenizer.json")
        ]
        assert meta["documents"] == 5003 and meta["split"] == "documents"
    assert digests["csv"] == digests["sqlite"] == digests["jsonl"]
    train, val = store_text(tmp_path / "csv")
    assert "<br />" not in train + val and np.isclose(
        len(val) / (len(train) + len(val)), 0.1, atol=0.01
    )


def test_a_nul_byte_in_a_csv_field_is_warned_of_once(tmp_path, capsys):
    rows = (
        "id,Text\n"
        + "".join(f"{i},fine row {i}\n" for i in range(50))
        + '50,"a\x00b"\n51,"c\x00"\n'
    )
    (tmp_path / "r.csv").write_bytes(rows.encode("utf-8"))
    assert documents(tmp_path, [tmp_path / "r.csv"], column="Text")[-2:] == ["a\x00b", "c\x00"]
    err = capsys.readouterr().err
    assert err.count("NUL byte") == 1 and "line 52" in err and "--strip-control" in err
    documents(tmp_path, [tmp_path / "r.csv"], column="Text", strip_control=True)
    assert "NUL" not in capsys.readouterr().err
