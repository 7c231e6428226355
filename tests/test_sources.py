import pytest

from lstmgen.config import ReadOptions, parse_duration
from lstmgen.data.reading import Source, read_text_chunks
from lstmgen.data.sources import documents, resolve_sources
from lstmgen.errors import LstmgenError


def read_all(sources, options=None):
    return ["".join(doc) for s in sources for doc in documents(s, options)]


def test_file_folder_and_named_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("alpha", encoding="utf-8")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.md").write_text("beta", encoding="utf-8")
    (sub / ".hidden").write_text("hidden", encoding="utf-8")
    sources = resolve_sources([str(tmp_path), "python-docs"], spool_dir=tmp_path / "spool")
    texts = read_all(sources)
    assert texts[:2] == ["alpha", "beta"]  # recursive, sorted, hidden files left out
    assert len(texts) > 50 and "def" in "".join(texts[2:])  # python-docs topics


def test_binary_file_in_folder_is_skipped_with_warning(tmp_path, capsys):
    (tmp_path / "text.txt").write_text("words", encoding="utf-8")
    (tmp_path / "image.bin").write_bytes(b"\x89PNG\0\0\0binary")
    sources = resolve_sources([str(tmp_path)], spool_dir=tmp_path / "spool")
    assert [s.name for s in sources] == [str(tmp_path / "text.txt")]
    assert "image.bin" in capsys.readouterr().err


def test_folder_without_text_files_is_an_error(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\0\1\2")
    with pytest.raises(LstmgenError, match="has no text files"):
        resolve_sources([str(tmp_path)], spool_dir=tmp_path / "spool")


def test_missing_path_names_it(tmp_path):
    with pytest.raises(LstmgenError, match="nope.txt does not exist"):
        resolve_sources([str(tmp_path / "nope.txt")], spool_dir=tmp_path)


def test_invalid_utf8_names_file_and_byte_offset(tmp_path, monkeypatch):
    monkeypatch.setattr("lstmgen.data.reading.CHUNK_BYTES", 7)  # the bad byte sits in a later chunk
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello world \xff tail")
    with pytest.raises(LstmgenError, match=r"bad.txt: invalid utf-8 at byte offset 12"):
        "".join(read_text_chunks(path, encoding="utf-8", errors="strict", label="bad.txt"))
    text = "".join(read_text_chunks(path, encoding="utf-8", errors="replace", label="bad.txt"))
    assert text == "hello world \ufffd tail"


def test_multibyte_and_crlf_split_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr("lstmgen.data.reading.CHUNK_BYTES", 3)
    path = tmp_path / "t.txt"
    path.write_bytes("é\r\nß\r\n€x".encode())
    assert (
        "".join(read_text_chunks(path, encoding="utf-8", errors="strict", label="t")) == "é\nß\n€x"
    )


def test_stdin_is_spooled(tmp_path, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin")))
    sources = resolve_sources(["-"], spool_dir=tmp_path / "spool")
    assert sources[0].name == "<stdin>" and read_all(sources) == ["from stdin"]


def test_other_encoding(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café".encode("latin-1"))
    assert read_all([Source(name="x", path=path)], ReadOptions(encoding="latin-1")) == ["café"]


@pytest.mark.parametrize(
    "text,seconds", [("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("45", 45), (12, 12)]
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["ten minutes", "5x", "-3", "0"])
def test_parse_duration_rejects(text):
    with pytest.raises(LstmgenError):
        parse_duration(text)
