"""The copy index, the copy guard (--max-copy) and the novelty figures (issue 31)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lstmgen
from conftest import TINY, make_text
from lstmgen.data.textindex import ARRAY, META, TEXT, build_index, open_index
from lstmgen.sampling.guard import CopyGuard, copy_banned, guard_end
from lstmgen.tokens.chars import CharTokenizer

MAX_COPY = 40
PASSAGE = make_text(900, seed=3)


@pytest.fixture(scope="module", params=["char", "word", "bpe"])
def memorised(request, tmp_path_factory) -> Path:
    """A tiny run that learns a short passage by heart (no dropout, many epochs)."""
    root = tmp_path_factory.mktemp(f"memorised-{request.param}")
    corpus = root / "passage.txt"
    corpus.write_text((PASSAGE + "\n") * 4, encoding="utf-8")
    level = {"level": request.param}
    if request.param == "bpe":
        level["vocab_size"] = 300
    settings = {**TINY, "hidden": 64}
    lstmgen.train([corpus], out=root / "run", epochs=20, quiet=True, **settings, **level)
    return root / "run"


def training_text(run: Path) -> str:
    return (run / "data" / TEXT).read_bytes().decode("utf-8", errors="replace")


def longest_copy_by_brute_force(sample: str, train: str) -> int:
    """The longest span of sample found in train, looking at every position."""
    best = 0
    for start in range(len(sample)):
        while start + best < len(sample) and sample[start : start + best + 1] in train:
            best += 1
    return best


def test_guard_keeps_every_copy_within_max_copy(memorised):
    model = lstmgen.load(memorised)
    plain = model.generate("", length=400, seed=1, num_samples=3, temperature=0.5)
    guarded = model.generate("", length=400, seed=1, num_samples=3, max_copy=MAX_COPY)
    train = training_text(memorised)
    assert max(longest_copy_by_brute_force(s, train) for s in plain) > MAX_COPY  # it quotes
    for sample in guarded:
        assert len(sample) > 100
        windows = [sample[i : i + MAX_COPY + 1] for i in range(len(sample) - MAX_COPY)]
        assert not any(w in train for w in windows)  # no 41-character span, at any position
    again = model.generate("", length=400, seed=1, num_samples=3, max_copy=MAX_COPY)
    assert again == guarded  # the same seed, the same text
    alone = model.generate("", length=400, seed=1, max_copy=MAX_COPY)
    assert alone == guarded[0]  # a sample's text does not depend on the batch


def test_figures_match_brute_force(memorised):
    model = lstmgen.load(memorised)
    sample = model.generate("", length=300, seed=4)
    figures = model.novelty(sample)
    assert figures["longest_copy"] == longest_copy_by_brute_force(sample, training_text(memorised))
    train = training_text(memorised)
    windows = [sample[i : i + 50] for i in range(len(sample) - 49)]
    assert figures["copied_50"] == round(np.mean([w in train for w in windows]), 4)


def brute_banned(train: str, generated: str, pieces: list[str], n: int) -> list[int]:
    """Tokens that, added character by character, would end an (n+1)-character span of train."""
    banned = []
    for token, piece in enumerate(pieces):
        for k in range(1, len(piece) + 1):
            text = generated + piece[:k]
            if len(text) > n and text[-(n + 1) :] in train:
                banned.append(token)
                break
    return banned


def test_guard_bans_exactly_the_tokens_that_copy_too_much(tmp_path):
    rng = random.Random(0)
    for trial in range(25):
        alphabet = "abé"[: rng.randint(2, 3)]
        train = "".join(rng.choice(alphabet) for _ in range(rng.randint(20, 300)))
        tokenizer = CharTokenizer(sorted(set(train)))
        (tmp_path / str(trial)).mkdir()
        index = build_index(tmp_path / str(trial), tokenizer.encode(train), tokenizer, quiet=True)
        n = rng.randint(1, 8)
        lengths = [rng.randint(1, n + 3) for _ in range(12)]
        words = {"".join(rng.choice(alphabet) for _ in range(k)) for k in lengths}
        pieces = [*sorted(words), *alphabet]
        state = CopyGuard([index], [p.encode() for p in pieces], n).start()
        generated = ""
        for _ in range(50):
            banned = state.banned()
            expected = brute_banned(train, generated, pieces, n)
            assert sorted(set([] if banned is None else banned.tolist())) == expected
            allowed = [t for t in range(len(pieces)) if t not in expected]
            if not allowed:
                break
            token = rng.choice(allowed)
            state.advance(token)
            generated += pieces[token]


def test_every_token_removed_ends_the_sample(tmp_path):
    # every 3-letter string of a and b stands in the text: after 2 letters nothing may follow
    train = "aaababbbaa"
    tokenizer = CharTokenizer(["a", "b"])
    index = build_index(tmp_path, tokenizer.encode(train), tokenizer, quiet=True)
    state = CopyGuard([index], [b"\xff", b"a", b"b"], 2).start()
    state.advance(1)
    state.advance(2)
    row_banned, exhausted = copy_banned([state], None, np.array([0]), (1, 3))
    assert exhausted.tolist() == [True]
    assert row_banned is None or not row_banned[0, 1:].any()  # lifted: the draw stays defined

    class Decoder:
        def flush(self):
            return ""

    assert guard_end(Decoder(), None) == ("", "stop")


def test_jsonl_figures_and_evaluate_novelty(memorised, tmp_path):
    if "bpe" not in str(memorised):
        pytest.skip("one level is enough for the command line")
    cli = [sys.executable, "-m", "lstmgen"]
    out = subprocess.run(
        [*cli, "generate", str(memorised), "--length", "300", "--seed", "1", "--format", "jsonl"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    record = json.loads(out.stdout.splitlines()[0])
    assert record["longest_copy"] > 0 and 0 <= record["copied_50"] <= 1
    if record["longest_copy"] > 100:
        assert "--max-copy" in out.stderr  # the one-line note
    sample = tmp_path / "sample.txt"
    sample.write_text(record["text"], encoding="utf-8")
    scored = subprocess.run(
        [*cli, "evaluate", str(memorised), str(sample), "--novelty", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    figures = json.loads(scored.stdout)
    assert figures["longest_copy"] == record["longest_copy"]
    assert figures["copied_50"] == record["copied_50"]


def test_damaged_or_missing_index_is_rebuilt(memorised):
    if "char" not in str(memorised):
        pytest.skip("the files are the same at every level")
    data = memorised / "data"
    model = lstmgen.load(memorised)
    model.novelty("x")  # built
    array = (data / ARRAY).read_bytes()
    (data / ARRAY).write_bytes(bytes(reversed(array)))  # right size, wrong order
    assert open_index(data, train_tokens=len(np.fromfile(data / "train.bin", np.uint8))) is None
    (data / META).unlink()
    fresh = lstmgen.load(memorised)
    assert fresh.generate("", length=50, seed=2, max_copy=MAX_COPY)
    assert (data / ARRAY).read_bytes() == array  # rebuilt the same
    (data / TEXT).write_bytes(b"short")  # truncated
    again = subprocess.run(
        [sys.executable, "-m", "lstmgen", "generate", str(memorised), "--length", "30",
         "--max-copy", "40"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert again.returncode == 0 and "Traceback" not in again.stderr
    assert "copy index of the training text built" in again.stderr


def test_missing_training_text_is_one_line(memorised, tmp_path):
    if "word" not in str(memorised):
        pytest.skip("one level is enough")
    lone = tmp_path / "lone"
    lone.mkdir()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        (lone / name).write_bytes((memorised / name).read_bytes())
    run = subprocess.run(
        [sys.executable, "-m", "lstmgen", "generate", str(lone), "--max-copy", "40"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.startswith("lstmgen: error:") and "training text" in run.stderr


BUILDER = """
import os, signal, sys
from pathlib import Path
import lstmgen.data.textindex as textindex
from lstmgen.tokens.chars import CharTokenizer

kill_at, calls = int(sys.argv[3]), [0]

def counted(function):  # SIGKILL this process at the kill_at-th step of the build
    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return function(*args, **kwargs)
    return wrapper

for name in ("write_text", "sort_text", "_fsync"):
    setattr(textindex, name, counted(getattr(textindex, name)))
textindex.os.replace = counted(os.replace)
text = Path(sys.argv[2]).read_text(encoding="utf-8")
tok = CharTokenizer(sorted(set(text)))
textindex.build_index(Path(sys.argv[1]), tok.encode(text), tok, quiet=True)
"""
BUILD_STEPS = 8  # write the text, sort, then fsync and rename text, array and sizes file


def test_killed_build_leaves_no_half_index_that_is_used(tmp_path):
    text = make_text(200_000, seed=5)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    tokenizer = CharTokenizer(sorted(set(text)))
    (tmp_path / "whole").mkdir()
    whole = build_index(tmp_path / "whole", tokenizer.encode(text), tokenizer, quiet=True)
    expected = np.asarray(whole.array)
    store = tmp_path / "store"
    store.mkdir()
    for kill_at in range(1, BUILD_STEPS + 2):  # before each step of the build; then none
        child = subprocess.run(
            [sys.executable, "-c", BUILDER, str(store), str(corpus), str(kill_at)]
        )
        assert child.returncode == (-signal.SIGKILL if kill_at <= BUILD_STEPS else 0)
        index = open_index(store, train_tokens=len(text))
        if kill_at <= BUILD_STEPS:
            assert index is None, kill_at  # never a half index
        else:
            assert np.array_equal(np.asarray(index.array), expected)
            assert bytes(index.text) == text.encode("utf-8")


def test_server_honours_max_copy(memorised):
    if "char" not in str(memorised):
        pytest.skip("one level is enough")
    from fastapi.testclient import TestClient

    from lstmgen.serve.app import create_app

    train = training_text(memorised)
    with TestClient(create_app([memorised])) as http:
        body = {"prompt": "", "max_tokens": 300, "seed": 1, "n": 2, "max_copy": MAX_COPY}
        reply = http.post("/v1/completions", json=body)
        assert reply.status_code == 200
        for choice in reply.json()["choices"]:
            text = choice["text"]
            assert len(text) > 100
            assert not any(text[i : i + MAX_COPY + 1] in train for i in range(len(text) - MAX_COPY))
        bad = http.post("/v1/completions", json={**body, "max_copy": 0})
        assert bad.status_code == 400 and "max_copy" in bad.json()["error"]["message"]
    static = Path(lstmgen.__file__).parent / "serve" / "static"
    assert 'id="max_copy"' in (static / "index.html").read_text(encoding="utf-8")
    assert "max_copy:" in (static / "page.js").read_text(encoding="utf-8")  # the page sends it


def test_fine_tuned_run_is_guarded_against_its_base_too(memorised, tmp_path):
    if "char" not in str(memorised):
        pytest.skip("one level is enough")
    lstmgen.load(memorised).novelty("x")  # the base's index is at hand
    corpus = tmp_path / "other.txt"
    corpus.write_text(make_text(3000, seed=9), encoding="utf-8")
    tuned = tmp_path / "tuned"
    lstmgen.train([corpus], out=tuned, init_from=str(memorised), epochs=1, quiet=True)
    shown = subprocess.run(
        [sys.executable, "-m", "lstmgen", "info", str(tuned)], capture_output=True, text=True
    ).stdout
    assert "and the base run's" in shown
    texts = [training_text(memorised), training_text(tuned)]
    model = lstmgen.load(tuned)
    for sample in model.generate("", length=300, seed=3, num_samples=2, max_copy=MAX_COPY):
        windows = [sample[i : i + MAX_COPY + 1] for i in range(len(sample) - MAX_COPY)]
        assert not any(w in text for w in windows for text in texts)
