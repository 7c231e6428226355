"""Hostile input and faults of the machine (issue 33, items 2 to 8): weights of the wrong type,
a full disk, a closed pipe, giant cells, damaged web manifests, memory that must not grow with
the input. Each is told in one line (exit 2) or handled, never a traceback or a silent drop."""

from __future__ import annotations

import csv
import errno
import json
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY, make_text
from lstmgen.config import ReadOptions
from test_hostile import refused, run_cli

LSTMGEN = str(Path(sys.executable).with_name("lstmgen"))


@pytest.fixture
def run(trained_run, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(trained_run, target)
    return target


# ----- item 3: weights re-saved as another dtype ----------------------------------------------
def test_weights_resaved_as_int32_are_refused_at_load(run, capsys):
    from safetensors.torch import load_file, save_file

    for folder in (run, run / "best"):
        weights = folder / "model.safetensors"
        if weights.is_file():
            tensors = load_file(str(weights))
            save_file({k: (v * 1000).int() for k, v in tensors.items()}, str(weights))
    for command in (
        ["evaluate", run, run / "samples.md"],
        ["export", run, "--out", run.parent / "exported"],
    ):
        refused(command, capsys, "model.safetensors", "I32", "F32", "restore it or train again")
    assert not (run.parent / "exported").exists()


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    """A tiny run conditioned on a stars column, trained for a few steps: it classifies badly,
    but it classifies."""
    import lstmgen

    root = tmp_path_factory.mktemp("classifier")
    rows = [{"stars": str(1 + i % 2), "text": make_text(200, seed=i)} for i in range(40)]
    table = write_table(root / "train.csv", rows)
    lstmgen.train(
        [table], out=root / "run", column="text", condition_column=["stars"], max_steps=10,
        quiet=True, **TINY,
    )  # fmt: skip
    return root / "run"


def write_table(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["stars", "text"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def classify_args(run: Path, table: Path, *more) -> list:
    return ["classify", run, table, "--column", "text", "--condition-column", "stars", *more]


# ----- item 2: a row dropped in silence; predictions that join back to their rows -------------
@pytest.fixture
def small_records(monkeypatch):
    """A record limit of 1,000 characters: a giant cell without writing 20 MB."""
    from lstmgen.data import tables

    monkeypatch.setattr(tables, "MAX_RECORD_CHARS", 1_000)


def test_a_giant_cell_is_told_and_each_prediction_names_its_row(
    classifier, tmp_path, capsys, small_records
):
    rows = [
        {"stars": "1", "text": "the cat sat on the mat"},
        {"stars": "2", "text": "a" * 5_000},
        {"stars": "2", "text": "the dog ran to the red house"},
    ]
    table = write_table(tmp_path / "giant.csv", rows)
    code, out, err = run_cli(classify_args(classifier, table, "--json"), capsys)
    assert code == 0 and "Traceback" not in err
    why = "field larger than field limit (1000)"  # csv's words
    assert f"dropped 1 malformed row ({table}: row at line 3, {why}): not classified" in err
    result = json.loads(out)
    assert [(p["source"], p["row"], p["label"]) for p in result["predictions"]] == [
        (str(table), 0, "1"),
        (str(table), 2, "2"),
    ]
    assert result["documents"] == 2 and result["dropped"]["malformed_rows"] == 1
    code, out, err = run_cli(classify_args(classifier, table), capsys)
    assert code == 0 and out.startswith("2 documents (1 malformed row dropped); ")
    # the giant cell alone: the error says what was dropped
    alone = write_table(tmp_path / "alone.csv", rows[1:2])
    refused(
        classify_args(classifier, alone),
        capsys,
        "the sources hold no documents to classify",
        f"(dropped 1 malformed row ({alone}: row at line 2, {why}))",
    )


def test_jsonl_writes_one_prediction_a_line_with_its_row(classifier, tmp_path, capsys):
    rows = [{"stars": str(1 + i % 2), "text": make_text(40, seed=i)} for i in range(5)]
    table = write_table(tmp_path / "five.csv", rows)
    code, out, err = run_cli(classify_args(classifier, table, "--format", "jsonl"), capsys)
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(p["row"], p["label"]) for p in lines] == [(i, r["stars"]) for i, r in enumerate(rows)]
    assert "5 documents; predicted stars" in err  # the scores go to stderr


# ----- item 8: an empty text is scored by the prior alone: say so ------------------------------
def test_empty_documents_are_told(classifier, tmp_path, capsys):
    rows = [{"stars": "1", "text": "the cat sat"}, {"stars": "2", "text": ""}]
    table = write_table(tmp_path / "empty.csv", rows)
    code, out, err = run_cli(classify_args(classifier, table, "--json"), capsys)
    assert code == 0
    assert f"1 empty document(s) ({table}: row 1) have no text to score" in err
    assert json.loads(out)["dropped"]["empty"] == 1


# ----- item 6: classify's memory does not grow with the documents ------------------------------
def classify_peak(run: Path, table: Path) -> int:
    import lstmgen

    tracemalloc.start()
    try:
        lstmgen.classify(run, [table], column="text", on_prediction=lambda p: None, batch=64)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_classify_memory_does_not_grow_with_the_documents(classifier, tmp_path):
    peaks = []
    for count in (300, 1_200):
        rows = [{"stars": "1", "text": make_text(60, seed=i)} for i in range(count)]
        peaks.append(classify_peak(classifier, write_table(tmp_path / f"{count}.csv", rows)))
    # holding every text, its ids and its prediction grew ~1 KB a document: 900 KB more here
    assert peaks[1] - peaks[0] < 200_000, peaks


# ----- item 4: a full disk and a closed pipe --------------------------------------------------
def test_a_full_stdout_is_one_line_and_exit_2(classifier, tmp_path):
    table = write_table(tmp_path / "t.csv", [{"stars": "1", "text": "the cat sat"}])
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [LSTMGEN, *map(str, classify_args(classifier, table, "--json"))],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "lstmgen: error: the disk is full; free some space and run again"


def test_a_closed_pipe_ends_quietly(classifier, tmp_path):
    table = write_table(tmp_path / "t.csv", [{"stars": "1", "text": "the cat sat"}])
    child = subprocess.Popen(
        [LSTMGEN, *map(str, classify_args(classifier, table, "--format", "jsonl"))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    child.stdout.close()  # `| head` that has read all it wants
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0 and "Traceback" not in err and "Exception" not in err, err


def test_export_onto_a_full_disk_is_one_line_and_leaves_nothing(
    trained_run, tmp_path, capsys, monkeypatch
):
    import lstmgen.export.web as web

    write_text = Path.write_text

    def full(self, *args, **kwargs):
        if self.name == "index.html":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    for name in web.RUNTIME_FILES:
        (runtime / name).write_bytes(b"")
    out = tmp_path / "web"
    line = refused(
        ["export", trained_run, "--out", out, "--format", "web", "--runtime-dir", runtime],
        capsys,
        "the disk is full writing",
        "index.html",
        "free some space",
    )
    assert line.endswith("; free some space and run again")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runtime"]


# ----- item 5: evaluate in a stream: today's number, in memory that does not grow --------------
def hostile_text(chars: int) -> str:
    """make_text with blank lines, runs of spaces, indented lines and characters the model
    has not seen (unknown tokens): places where a careless cut would change the tokens."""
    lines = make_text(chars).split("\n")
    for i in range(0, len(lines), 7):
        lines[i] = "   " + lines[i] + "  é\n"
    return "\n".join(lines)[:chars]


def test_streamed_evaluate_equals_the_whole_text_scored_at_once(trained_run):
    import lstmgen
    from lstmgen.config import bits_per_char
    from lstmgen.metrics import evaluate_tokens

    model = lstmgen.load(trained_run)
    text = hostile_text(12_000)  # over 16 ranges of 256 tokens, 12 chunks of 1,000
    ids = model.tokenizer.encode(text)
    nats, count = evaluate_tokens(model.module, ids)  # how evaluate scored it, all in memory
    before = float(bits_per_char(nats / count, len(ids) / len(text)))
    for chunk_chars in (1_000, 333, 10**6):
        pieces = (text[i : i + 97] for i in range(0, len(text), 97))
        result = model.evaluate(pieces, chunk_chars=chunk_chars)
        assert result["bits_per_char"] == pytest.approx(before, rel=1e-6)
        assert (result["characters"], result["tokens"]) == (len(text), len(ids))
        assert result["unknown_tokens"] == int((ids == 0).sum()) > 0


def test_streamed_evaluate_of_a_conditioned_run_equals_its_document_score(classifier):
    import lstmgen

    model = lstmgen.load(classifier)
    text = hostile_text(3_000)
    scores = model.classify([text])  # the document scored at once, under each value
    joint = scores["log_likelihood"][0] + np.log(scores["prior"])
    mixture = -np.logaddexp.reduce(joint) / len(model.tokenizer.encode(text))
    under_2 = -scores["log_likelihood"][0][scores["values"].index("2")] / len(
        model.tokenizer.encode(text)
    )
    for chunk_chars in (200, 10**6):
        streamed = model.evaluate(iter([text]), chunk_chars=chunk_chars)
        assert streamed["nats_per_token"] == pytest.approx(mixture, rel=1e-6)
        asked = model.evaluate(iter([text]), condition="stars=2", chunk_chars=chunk_chars)
        assert asked["nats_per_token"] == pytest.approx(under_2, rel=1e-6)


@pytest.mark.parametrize("level", ["word", "bpe"])
def test_chunks_cut_where_the_tokens_of_the_whole_stay_the_same(tmp_path, level):
    import lstmgen
    from lstmgen.evaluation import text_chunks
    from lstmgen.tokens import load_tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(hostile_text(20_000), encoding="utf-8")
    options = {"vocab_size": 300} if level == "bpe" else {}
    lstmgen.prepare([corpus], out=tmp_path / "store", level=level, **options)
    tokenizer = load_tokenizer(tmp_path / "store" / "tokenizer.json")
    text = hostile_text(8_000) + "\n\n  \n\nzebra quagga\n"
    chunks = list(text_chunks(iter(text), 500, anywhere=False))
    assert len(chunks) > 10 and "".join(chunks) == text
    whole = tokenizer.encode(text)
    assert np.array_equal(np.concatenate([tokenizer.encode(c) for c in chunks]), whole)


def evaluate_peak(run: Path, path: Path) -> int:
    """Peak memory traced (Python objects and NumPy arrays) while evaluate reads path."""
    import lstmgen
    from lstmgen.data.documents import text_pieces

    model = lstmgen.load(run)
    tracemalloc.start()
    try:
        model.evaluate(text_pieces([str(path)], ReadOptions()), chunk_chars=20_000)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_evaluate_memory_does_not_grow_with_the_text(trained_run, tmp_path, monkeypatch):
    from lstmgen.data import reading

    monkeypatch.setattr(reading, "CHUNK_BYTES", 16_384)  # files read 16 KB at a time, not 1 MB
    peaks = []
    for chars in (30_000, 120_000):
        path = tmp_path / f"{chars}.txt"
        path.write_text(make_text(chars, seed=chars), encoding="utf-8")
        peaks.append(evaluate_peak(trained_run, path))
    # held whole, the text, its ids and their layout grew ~28 bytes a character: 2.5 MB more here
    assert peaks[1] - peaks[0] < 100_000, peaks


# ----- item 7: the exported page on a damaged model.js ----------------------------------------
def damaged_manifests(good: dict) -> list[tuple[str, dict]]:
    def changed(**fields):
        return {**good, **fields}

    column = {"name": "stars", "values": ["1", "2"], "prior": [0.5, 0.5]}
    conditions = {"separator": "\n", "document_id": 1, "columns": [column]}
    return [
        ("held_out_bits_per_char", changed(held_out_bits_per_char="1.2")),
        ("cell", changed(cell=5)),
        ("tokens", changed(tokens={"a": 1})),
        ("sampling.length", changed(sampling={**good["sampling"], "length": 10**12})),
        ("conditions column", changed(conditions={**conditions, "columns": [
            {**column, "values": {"1": 0}}]})),
        ("vocab_size", changed(vocab_size="40")),
        ("no model", None),
    ]  # fmt: skip


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node (nodejs) to run page.js")
def test_the_page_shows_its_error_state_on_a_damaged_manifest(trained_run, tmp_path):
    import lstmgen
    from lstmgen.describe import info
    from lstmgen.export.manifest import manifest
    from lstmgen.export.web import STATIC

    good = manifest(
        lstmgen.load(trained_run), info(trained_run), checkpoint="best", quantize="none"
    )
    cases = damaged_manifests(good)
    listed = tmp_path / "manifests.json"
    listed.write_text(json.dumps([good, *(m for _, m in cases)]))
    script = Path(__file__).with_name("js") / "run_page.js"
    done = subprocess.run(
        ["node", str(script), str(STATIC / "page.js"), str(listed)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown[0] == {"state": "ready", "status": "ready", "uncaught": []}
    for (what, _), page in zip(cases, shown[1:], strict=True):
        assert page["uncaught"] == [] and page["state"] == "error", (what, page)
        assert "model.js is damaged" in page["status"] and what in page["status"], (what, page)
        assert "export the model again" in page["status"]


# ----- item 8: the server on a 400-digit max_tokens and a body cut off by its client ----------
def test_the_server_cuts_a_huge_number_in_its_error(trained_run):
    from fastapi.testclient import TestClient

    from lstmgen.serve import create_app

    huge = int("9" * 400)
    with TestClient(create_app([trained_run], max_tokens=100)) as http:
        for field in ("max_tokens", "n", "min_tokens"):
            reply = http.post("/v1/completions", json={"prompt": "a", field: huge})
            message = reply.json()["error"]["message"]
            assert reply.status_code == 400 and "9" * 21 not in message, (field, message)
            assert "999999999999… (400 digits)" in message, message


def test_metrics_label_a_body_cut_off_by_its_client_apart(trained_run):
    import asyncio

    from fastapi.testclient import TestClient

    from lstmgen.serve import create_app

    app = create_app([trained_run], max_tokens=100)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/completions", "raw_path": b"/v1/completions",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": ("x", 80),
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
    }  # fmt: skip
    messages = iter([
        {"type": "http.request", "body": b'{"prompt": "a", "max', "more_body": True},
        {"type": "http.disconnect"},
    ])  # fmt: skip

    async def receive():
        return next(messages, {"type": "http.disconnect"})

    async def send(message):
        pass

    with TestClient(app) as http:
        asyncio.run(app(scope, receive, send))
        bad = http.post("/v1/completions", json={"prompt": "a", "top_p": 1.5})
        assert bad.status_code == 400
        counts = {
            line.split()[0]: float(line.split()[1])
            for line in http.get("/metrics").text.splitlines()
            if line.startswith("lstmgen_requests_total")
        }
    assert counts == {
        'lstmgen_requests_total{status="client_cut_off"}': 1.0,
        'lstmgen_requests_total{status="400"}': 1.0,
    }
