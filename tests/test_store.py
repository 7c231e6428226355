import numpy as np
import pytest

from lstmgen.config import DataConfig as PrepareConfig
from lstmgen.data.prepare import write_store
from lstmgen.data.reading import Source
from lstmgen.data.store import TokenStore
from lstmgen.errors import LstmgenError
from lstmgen.tokens import load_tokenizer


def prepare(sources, out, **options):
    write_store(sources, out, PrepareConfig(**options), quiet=True)
    return load_tokenizer(out / "tokenizer.json")


def test_prepare_splits_tail_and_round_trips(tmp_path):
    text = "abcdefghij" * 100  # 1000 characters
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    tok = prepare([Source(name="t", path=tmp_path / "t.txt")], tmp_path / "store", val_fraction=0.1)
    store = TokenStore.open(tmp_path / "store")
    assert store.train.dtype == np.uint8  # 1 byte per character for a small vocabulary
    assert (len(store.train), len(store.val)) == (900, 100)
    assert tok.decode(store.train) == text[:900] and tok.decode(store.val) == text[900:]
    assert store.meta["characters"] == 1000 and store.meta["documents"] == 1


def test_documents_are_joined_with_a_blank_line(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.txt").write_text(name * 50, encoding="utf-8")
    sources = [Source(name=n, path=tmp_path / f"{n}.txt") for n in ("a", "b")]
    tok = prepare(sources, tmp_path / "store", val_fraction=0.1)
    store = TokenStore.open(tmp_path / "store")
    assert tok.decode(np.concatenate([store.train, store.val])) == "a" * 50 + "\n\n" + "b" * 50


def test_empty_corpus_is_an_error(tmp_path):
    (tmp_path / "e.txt").write_text("", encoding="utf-8")
    with pytest.raises(LstmgenError, match="corpus is empty"):
        prepare([Source(name="e", path=tmp_path / "e.txt")], tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_store_without_meta_or_tokenizer_is_refused(tmp_path):
    (tmp_path / "t.txt").write_text("hello there " * 50, encoding="utf-8")
    prepare([Source(name="t", path=tmp_path / "t.txt")], tmp_path / "store")
    (tmp_path / "store" / "tokenizer.json").unlink()
    with pytest.raises(LstmgenError, match="not a complete token store"):
        TokenStore.open(tmp_path / "store")


def test_truncated_store_is_refused(tmp_path):
    (tmp_path / "t.txt").write_text("hello there " * 50, encoding="utf-8")
    prepare([Source(name="t", path=tmp_path / "t.txt")], tmp_path / "store")
    with open(tmp_path / "store" / "train.bin", "r+b") as f:
        f.truncate(10)
    with pytest.raises(LstmgenError, match="truncated"):
        TokenStore.open(tmp_path / "store")


def test_failed_prepare_leaves_no_store(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ok text " * 10 + b"\xff")
    with pytest.raises(LstmgenError, match="byte offset 80"):
        prepare([Source(name="bad.txt", path=tmp_path / "bad.txt")], tmp_path / "store")
    assert not (tmp_path / "store").exists()
