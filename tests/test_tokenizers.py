import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmgen.errors import LstmgenError
from lstmgen.tokens import CharCounter, CharTokenizer, load_tokenizer


def fitted(text: str, **kw) -> CharTokenizer:
    counter = CharCounter()
    counter.update(text)
    return CharTokenizer.fit(counter, **kw)


def test_round_trip_and_vocabulary():
    text = "Hello, wörld! 🙂\nSecond line."
    tok = fitted(text)
    assert tok.vocab_size == len(set(text)) + 1  # + the unknown character
    ids = tok.encode(text)
    assert ids.min() >= 1 and tok.decode(ids) == text


def test_unknown_characters_map_to_id_zero():
    tok = fitted("abc")
    ids = tok.encode("abzc€")
    assert ids.tolist()[2] == 0 and ids.tolist()[4] == 0
    assert tok.decode(ids) == "ab\ufffdc\ufffd"


@settings(max_examples=200, deadline=None)
@given(st.text(st.sampled_from("ab \n\r\té—🙂") | st.characters(codec="utf-8"), max_size=200))
def test_char_level_is_lossless(text):
    tok = fitted(text)
    ids = tok.encode(text)
    assert tok.decode(ids) == text and (len(ids) == 0 or ids.min() >= 1)
    assert tok.encode_utf8(text.encode(), np.uint32).tolist() == ids.tolist()


def test_refitting_on_training_counts_and_the_table_between_vocabularies():
    tok = fitted("abcdz")
    counts = np.array([0, 5, 3, 0, 1, 0])  # by id: unknown, a, b, c, d, z
    assert tok.refitted(counts).chars == ["a", "b", "d"]
    assert tok.refitted(counts, min_count=2).chars == ["a", "b"]
    assert tok.refitted(counts, max_vocab=2).chars == ["a"]
    table = tok.ids_in(tok.refitted(counts), np.uint8)
    assert table.dtype == np.uint8 and table.tolist() == [0, 1, 2, 0, 3, 0]


def test_min_count_and_max_vocab():
    tok = fitted("aaaabbbc", min_count=2)
    assert tok.chars == ["a", "b"]
    tok = fitted("aaaabbbc", max_vocab=2)  # one slot is the unknown character
    assert tok.chars == ["a"]


def test_save_load(tmp_path):
    tok = fitted("xyz\n")
    tok.save(tmp_path / "tokenizer.json")
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert again.chars == tok.chars
    np.testing.assert_array_equal(again.encode("zyx?"), tok.encode("zyx?"))


def test_newer_format_is_refused(tmp_path):
    (tmp_path / "tokenizer.json").write_text(
        json.dumps({"format": 99, "kind": "char", "chars": []})
    )
    with pytest.raises(LstmgenError, match="newer lstmgen"):
        load_tokenizer(tmp_path / "tokenizer.json")


def test_counting_over_chunks_equals_whole():
    a, b = CharCounter(), CharCounter()
    a.update("hello world")
    for piece in ("hel", "lo w", "orld"):
        b.update(piece)
    assert a.counts == b.counts and a.total == b.total == 11


def decodes(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def test_utf8_fast_paths_agree_with_python():
    import random

    from lstmgen.tokens.utf8 import complete_prefix, find_invalid

    rng = random.Random(0)
    alphabet = "abc \n\r\t.é—“”🙂ßЖ中"
    for trial in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60)))
        tok = fitted(text[: len(text) // 2] + "a", max_vocab=rng.choice([None, 4]))
        data = bytearray(text.encode())
        if trial % 2:  # damage it
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data)
        try:
            data.decode()
            expected = None
        except UnicodeDecodeError as e:
            expected = e.start
        assert find_invalid(data) == expected
        if expected is None:
            assert tok.encode_utf8(data, np.uint8).tolist() == tok.encode(data.decode()).tolist()
            # A chunk cut anywhere: kept up to its last whole character, less a final '\r'
            # (its '\n' may be in the next chunk).
            chunk = data[: rng.randint(0, len(data))]
            whole = max(n for n in range(len(chunk) + 1) if decodes(chunk[:n]))
            assert complete_prefix(chunk) == whole - (chunk[:whole].endswith(b"\r"))
            exact, fast = CharCounter(), CharCounter(exact=False)
            exact.update(data)
            fast.update(data.decode())
            assert exact.total == fast.total == len(data.decode()) and set(exact.counts) == set(
                fast.counts
            )
