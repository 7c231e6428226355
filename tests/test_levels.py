"""Word and BPE levels: lossless tokenizers (properties too), pretrained vectors, end to end."""

import functools
import json
import re
import struct

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import lstmgen
from conftest import SHARED_DATA, make_text
from lstmgen.data.levels import TextEncoder, _at_whitespace
from lstmgen.data.splits import SplitWriter
from lstmgen.errors import LstmgenError
from lstmgen.tokens import load_tokenizer
from lstmgen.tokens.bpe import BpeTokenizer
from lstmgen.tokens.vectors import read_vectors
from lstmgen.tokens.words import Format1WordTokenizer, WordCounter, WordTokenizer, split_words
from test_cli import TINY_FLAGS, run_cli

# Text that exercises the tokenizers: words, numbers, punctuation runs, every kind of
# whitespace (runs, tabs, CR, NBSP, "\x1c" which Python calls whitespace and BPE does not),
# non-ASCII letters and symbols; now and then any character at all.
SAMPLE_CHARS = "ab cdAZ019_ '’.,-—!?\"()\n\n  \t\r\xa0\x1c\u3000éßЖ中🙂"
TEXTS = st.text(st.sampled_from(SAMPLE_CHARS) | st.characters(codec="utf-8"), max_size=120)
PROPERTY = settings(max_examples=150, deadline=None)


def word_tokenizer(text: str, **kw) -> WordTokenizer:
    counter = WordCounter()
    counter.update(text)
    return WordTokenizer.fit(counter, **kw)


def test_word_split_carries_the_space_before_a_word_and_keeps_all_other_whitespace():
    tokens = ["Don't", " stop", ",", " it's", " 3.14", "!", "\n", "\n", "'", "Tis", " o'er", "."]
    assert split_words("Don't stop, it's 3.14!\n\n'Tis o'er.") == tokens
    # A run of spaces leaves its last one to the word: " b" is the usual token of b.
    tokens = ["a", " ", " b", "\t", "c", " ", "\n", "\t", "d", " ...", "e", " "]
    assert split_words("a  b\tc \n\td ...e ") == tokens


def test_word_round_trip_unknowns_and_caps():
    text = 'He said, "Hello there." (Quietly.)  Then:\twho?\nNobody!'
    tok = word_tokenizer(text)
    assert tok.decode(tok.encode(text)) == text and tok.encode(text).min() >= 1
    # An unknown word keeps the space before it (the lone space is always in the vocabulary).
    assert tok.decode(tok.encode("He said zebra.")) == "He said <unk>."
    assert tok.unknown_words("He said zebra zebra.") == ["zebra"]
    assert tok.unknown_characters("He said zebra zebra.") == 10
    # A punctuation run outside the vocabulary is spelt with its marks: nothing is lost.
    assert tok.decode(tok.encode("Nobody!!!")) == "Nobody!!!" and tok.unknown_characters("!!!") == 0
    # " " ranks by every space it may stand for: 5 here, before " a" and " b" (2 each).
    small = word_tokenizer("a a a b b c", max_vocab=3, min_count=1)
    assert small.words == [" ", " a"]
    assert word_tokenizer("a a a b b c", min_count=2).words == [" ", " a", " b"]


def test_a_format_1_word_tokenizer_still_encodes_and_decodes_as_it_did(tmp_path):
    """Format 1 dropped spaces and guessed them back: its runs still load and generate."""
    words = ["He", "said", ",", '"', "Hello", "there", ".", "\n", "(", ")"]
    saved = {"format": 1, "kind": "word", "level": "word", "unknown_id": 0, "words": words}
    (tmp_path / "tokenizer.json").write_text(json.dumps(saved), encoding="utf-8")
    tok = load_tokenizer(tmp_path / "tokenizer.json")
    assert isinstance(tok, Format1WordTokenizer) and tok.vocab_size == 11
    ids = tok.encode('He said, "Hello there." (zebra)\nHe')
    assert ids.tolist() == [1, 2, 3, 4, 5, 6, 7, 4, 9, 0, 10, 8, 1]
    assert tok.decode(ids) == 'He said, "Hello there." (<unk>)\nHe'
    decoder = tok.stream_decoder(tok.encode("He said"))  # spacing follows the prime
    assert [decoder.feed(i) for i in tok.encode("there.")] == [" there", "."]
    tok.save(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == saved


def test_a_newer_word_tokenizer_is_refused(tmp_path):
    saved = {"format": 3, "kind": "word", "level": "word", "unknown_id": 0, "words": []}
    (tmp_path / "tokenizer.json").write_text(json.dumps(saved), encoding="utf-8")
    with pytest.raises(LstmgenError, match="newer lstmgen"):
        load_tokenizer(tmp_path / "tokenizer.json")


def assert_known_text_survives(tok, text: str) -> None:
    """decode(encode(text)) is text with each unknown piece written "<unk>": the pieces between
    them come back in order, and only the unknown characters are missing."""
    back = tok.decode(tok.encode(text))
    known = back.split(tok.unknown_text)
    assert text.startswith(known[0]) and text.endswith(known[-1])
    at = len(known[0])
    for piece in known[1:]:
        found = text.find(piece, at + 1)  # an unknown piece is at least one character
        assert found > at, (piece, text)
        at = found + len(piece)
    assert sum(map(len, known)) == len(text) - tok.unknown_characters(text)


@PROPERTY
@given(TEXTS)
def test_word_level_is_lossless(text):
    tok = word_tokenizer(text)
    ids = tok.encode(text)
    assert "".join(split_words(text)) == text
    assert tok.decode(ids) == text and (len(ids) == 0 or ids.min() >= 1)
    decoder = tok.stream_decoder()
    assert "".join(decoder.feed(int(i)) for i in ids) + decoder.flush() == text


@PROPERTY
@given(TEXTS, TEXTS)
def test_word_level_keeps_the_known_text_around_unknown_words(training, text):
    assume("<unk>" not in text)  # the text's own "<unk>" would read as an unknown word
    assert_known_text_survives(word_tokenizer(training + " a"), text)


def test_word_and_bpe_save_load(tmp_path):
    text = make_text(3000)
    for tok in (word_tokenizer(text), BpeTokenizer.train([text], vocab_size=300)):
        tok.save(tmp_path / "tokenizer.json")
        assert json.loads((tmp_path / "tokenizer.json").read_text())["level"] == tok.kind
        again = load_tokenizer(tmp_path / "tokenizer.json")
        assert again.kind == tok.kind and again.vocab_size == tok.vocab_size
        np.testing.assert_array_equal(again.encode(text), tok.encode(text))
        assert type(again) is type(tok) and again.decode(again.encode(text)) == text


@functools.cache
def bpe_tokenizer() -> BpeTokenizer:
    return BpeTokenizer.train([make_text(5000), SAMPLE_CHARS * 20], vocab_size=400)


@PROPERTY
@given(TEXTS)
def test_bpe_level_is_lossless(text):
    assert bpe_tokenizer().decode(bpe_tokenizer().encode(text)) == text


def encoded_in_pieces(tok, text: str, chunk_sizes: list[int], limit: int) -> list[int]:
    """What preparation writes: a document read in chunks, re-cut before whitespace into
    pieces of about `limit` characters, encoded in batches of about `limit` characters."""
    chunks, at = [], 0
    for size in chunk_sizes:
        chunks.append(text[at : at + size])
        at += size
    chunks.append(text[at:])
    encoder = TextEncoder(tok, np.dtype(np.int64))
    encoder.flush_length = limit
    out: list[np.ndarray] = []
    writer = SplitWriter(encoder, out.append)
    for piece in _at_whitespace(chunks, limit=limit):
        writer.write(piece)
    writer.flush()
    return np.concatenate([np.zeros(0, np.int64), *out]).tolist()


def longest_stretch_without_a_cut(text: str) -> int:
    """The most characters between two places where preparation may cut text (a space or
    newline after a non-space), or the start or end."""
    cuts = [0, *(m.end() for m in re.finditer(r"\S(?=[ \n])", text)), len(text)]
    return max(b - a for a, b in zip(cuts, cuts[1:], strict=False))


@PROPERTY
@given(TEXTS, st.lists(st.integers(0, 40), max_size=8), st.integers(1, 30))
def test_encoding_in_pieces_cut_before_whitespace_equals_encoding_whole(text, chunks, extra):
    # Pieces of about `limit` characters: only a longer stretch with no place to cut (a
    # megabyte without a space) is cut anyway, so that memory stays flat.
    limit = longest_stretch_without_a_cut(text) + extra
    for tok in (word_tokenizer(text[: len(text) // 2]), bpe_tokenizer()):
        assert encoded_in_pieces(tok, text, chunks, limit) == tok.encode(text).tolist()


def test_bpe_round_trips_any_text_and_streams_whole_characters():
    tok = BpeTokenizer.train([make_text(5000)], vocab_size=300)
    text = "Ünïcödé 🙂 — never seen in training\n\tok"
    ids = tok.encode(text)
    assert ids.min() >= 1 and tok.decode(ids) == text  # byte level: no unknown token
    decoder = tok.stream_decoder()
    pieces = [decoder.feed(int(i)) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text and "\ufffd" not in "".join(pieces)


def test_bpe_never_generates_bytes_the_training_text_lacked(tmp_path):
    import torch

    from lstmgen.config import ModelConfig
    from lstmgen.inference import Model
    from lstmgen.model import LSTMLanguageModel

    tok = BpeTokenizer.train([make_text(5000) + " café"], vocab_size=300)
    lead, e_acute = "é".encode()  # 0xC3 0xA9: seen; 0xE2 (a dash's lead byte) was not
    token_of = {piece: i for i, piece in enumerate(tok.token_bytes)}
    banned = set(tok.never_generated)
    assert (
        token_of[bytes([0xE2])] in banned and token_of[bytes([lead])] not in banned and 0 in banned
    )
    tok.save(tmp_path / "tokenizer.json")
    assert load_tokenizer(tmp_path / "tokenizer.json").never_generated == tok.never_generated
    # A model that strongly prefers unseen bytes and a lone lead byte still writes only whole,
    # seen characters: the lead byte is always followed by a continuation byte.
    torch.manual_seed(0)
    module = LSTMLanguageModel(
        ModelConfig(vocab_size=tok.vocab_size, embedding=8, hidden=8, layers=1)
    )
    with torch.no_grad():
        module.head.bias[token_of[bytes([0xE2])]] = 50.0
        module.head.bias[token_of[bytes([0x9C])]] = 50.0
        module.head.bias[token_of[bytes([lead])]] = 10.0
    texts = Model(module, tok).generate(length=41, seed=1, temperature=1.0, num_samples=4)
    assert all("\ufffd" not in text and "é" in text for text in texts)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["tinyshakespeare.txt", "junglebook.txt", "nietzsche.txt"])
def test_word_round_trip_on_shared_corpora(name):
    text = (SHARED_DATA / name).read_text(encoding="utf-8")[:300_000]
    assert word_tokenizer(text).decode(word_tokenizer(text).encode(text)) == text
    tok = word_tokenizer(text[:200_000], max_vocab=5000)
    assert_known_text_survives(tok, text)
    back = tok.decode(tok.encode(text))
    assert back.count("\n") == text.count("\n") and back.count(" ") == text.count(" ")


def write_vectors(tmp_path, words, dims=4, kind="glove"):
    rows = [(w, [float(i + 1) / 10 + d for d in range(dims)]) for i, w in enumerate(words)]
    path = tmp_path / f"vectors.{kind}"
    if kind == "w2v-binary":
        data = f"{len(rows)} {dims}\n".encode()
        for word, vec in rows:
            data += word.encode() + b" " + struct.pack(f"<{dims}f", *vec) + b"\n"
        path.write_bytes(data)
    else:
        lines = [f"{len(rows)} {dims}"] if kind == "w2v-text" else []
        lines += [" ".join([w, *map(str, v)]) for w, v in rows]
        path.write_text("\n".join(lines) + "\n")
    return path, dict(rows)


@pytest.mark.parametrize("kind", ["glove", "w2v-text", "w2v-binary"])
def test_embeddings_formats(tmp_path, kind):
    path, rows = write_vectors(tmp_path, ["the", "Cat", "zebra"], kind=kind)
    vectors = read_vectors(path, ["the", "cat", "dog"])  # ids 1..3; "Cat" matches "cat" lower-cased
    assert vectors.dimensions == 4 and sorted(vectors.found) == [1, 2]
    np.testing.assert_allclose(vectors.found[1], rows["the"], rtol=1e-6)
    matrix = vectors.matrix(4)
    assert (
        matrix.shape == (4, 4)
        and np.allclose(matrix[2], rows["Cat"])
        and np.abs(matrix[3]).max() < 1
    )
    assert vectors.coverage(4, np.array([0, 5, 3, 2])) == pytest.approx((2 / 3, 0.8))


def test_a_word_after_a_space_gets_the_word_s_vector(tmp_path):
    path, rows = write_vectors(tmp_path, ["the", "cat"])
    vectors = read_vectors(path, [" the", "the", " cat", "dog"])  # ids 1..4
    assert sorted(vectors.found) == [1, 2, 3]
    np.testing.assert_allclose(vectors.found[1], rows["the"], rtol=1e-6)
    np.testing.assert_allclose(vectors.found[2], rows["the"], rtol=1e-6)


def test_embeddings_bad_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("the 0.1 0.2\ncat 0.1 oops\n")
    with pytest.raises(LstmgenError, match="line 2 is malformed"):
        read_vectors(bad, ["cat"])
    bad.write_text("the 0.1 0.2\ncat 0.1 0.2 0.3\n")
    with pytest.raises(LstmgenError, match="line 2 has 3 numbers.*mixed dimensions"):
        read_vectors(bad, ["cat"])
    bad.write_text("zebra 0.1 0.2\n")
    with pytest.raises(LstmgenError, match="covers none"):
        read_vectors(bad, ["cat"])


def test_word_and_bpe_end_to_end(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(12_000), encoding="utf-8")
    vectors, rows = write_vectors(tmp_path, ["the", "cat", "dog", "mat"], dims=16)
    for level, extra in (
        ("word", ["--embeddings", vectors, "--freeze-embeddings"]),
        ("bpe", ["--vocab-size", "300"]),
    ):
        run = tmp_path / level
        code, _, err = run_cli(
            ["train", corpus, "--out", run, "--level", level, "--epochs", "1", *TINY_FLAGS, *extra],
            capsys,
        )
        assert code == 0, err
        config = json.loads((run / "config.json").read_text())
        assert (
            config["level"] == level
            and config["data"]["val_characters"] > config["data"]["val_tokens"]
        )
        if level == "word":
            assert "embeddings: 4 of" in err and config["model"]["embedding"] == 16
            model = lstmgen.load(run)
            cat = model.tokenizer.encode(" cat")[0]  # the word after a space
            np.testing.assert_allclose(
                model.module.embed.weight[cat].detach().numpy(), rows["cat"], rtol=1e-6
            )  # frozen
        code, out, err = run_cli(
            ["generate", run, "--prime", "The cat zebra", "--length", "30", "--seed", "3"], capsys
        )
        assert code == 0 and out.startswith("The cat zebra") and "<unk>" not in out
        assert (
            (err.count("warning") == 1 and "'zebra'" in err)
            if level == "word"
            else "warning" not in err
        )
        code, out, _ = run_cli(["evaluate", run, corpus, "--json"], capsys)
        result = json.loads(out)
        assert code == 0 and result["level"] == level and result["characters"] == 12_000
        assert result["bits_per_char"] == pytest.approx(
            result["nats_per_token"] * result["tokens"] / 12_000 / np.log(2)
        )
        (tmp_path / "odd.txt").write_text("The cat zebra quagga the mat.", encoding="utf-8")
        code, out, _ = run_cli(["evaluate", run, tmp_path / "odd.txt"], capsys)
        if level == "word":  # the two unknown words, 11 characters, are named as not scored
            assert code == 0 and "2 unknown tokens (11 characters)" in out
        else:
            assert code == 0 and "unknown" not in out
        code, out, _ = run_cli(["info", run], capsys)
        assert code == 0 and f"level  {level}" in out


@pytest.mark.parametrize("level", ["word", "bpe"])
@pytest.mark.parametrize("split", ["tail", "documents"])
def test_tokenizer_is_fitted_on_training_text_alone(tmp_path, capsys, level, split):
    """A word only the held-out text has is unknown to the vocabulary (word), in no merge (bpe)."""
    source = tmp_path / "docs"
    source.mkdir()
    held_out_word = "quokka"
    if split == "tail":  # the last 20 % is held out; the word fills the last ~10 %
        (source / "a.txt").write_text(
            make_text(20_000) + "\n" + f"{held_out_word} " * 300, encoding="utf-8"
        )
    else:  # the second document is always the first held out
        for i in range(40):
            text = f"{held_out_word} " * 200 if i == 1 else make_text(1_000, seed=i)
            (source / f"doc{i:02}.txt").write_text(text, encoding="utf-8")
    store = tmp_path / "store"
    code, _, err = run_cli(
        [
            "prepare",
            source,
            "--out",
            store,
            "--level",
            level,
            "--vocab-size",
            "500",
            "--val-fraction",
            "0.2",
            "--split",
            split,
        ],
        capsys,
    )
    assert code == 0, err
    tok = load_tokenizer(store / "tokenizer.json")
    if level == "word":
        assert not {held_out_word, " " + held_out_word} & set(tok.words) and " cat" in tok.words
        val = np.fromfile(
            store / "val.bin", dtype=json.loads((store / "meta.json").read_text())["dtype"]
        )
        assert np.count_nonzero(val == tok.unknown_id) >= 60
    else:
        assert not any(b"okk" in piece for piece in tok.token_bytes) and any(
            b"cat" in piece for piece in tok.token_bytes
        )


def test_bad_level_inputs(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(3000), encoding="utf-8")
    vectors, _ = write_vectors(tmp_path, ["the"])
    out = ["--out", tmp_path / "run", *TINY_FLAGS]
    cases = [
        (["--embeddings", vectors], "--embeddings needs --level word"),
        (["--level", "word", "--max-vocab", "1"], "--max-vocab 1 must be at least 2"),
        (["--level", "sentence"], "--level 'sentence' must be one of char, word, bpe"),
        (["--level", "bpe", "--vocab-size", "100"], "--vocab-size 100 must be at least 257"),
        (["--level", "word", "--freeze-embeddings"], "--freeze-embeddings needs --embeddings"),
    ]
    for args, message in cases:
        code, _, err = run_cli(["train", corpus, *out, *args], capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, (args, err)
    assert not (tmp_path / "run").exists()
