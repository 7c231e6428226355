"""Hostile files and extreme values (issue 26): each is refused with one line naming the file or
value and what to do, exit code 2 and no traceback, before anything big is allocated."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY, make_text
from lstmgen.cli import main
from lstmgen.errors import LstmgenError
from lstmgen.files import JSON_DEPTH_LIMIT, read_json


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def refused(args, capsys, *fragments: str) -> str:
    """Run the command; assert one `lstmgen: error:` line holding every fragment, exit 2."""
    code, _, err = run_cli(args, capsys)
    assert code == 2, (args, code, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstmgen: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def run(trained_run, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(trained_run, target)
    return target


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ----- 1: a config.json whose sizes the weights do not hold ---------------------------------
@pytest.mark.parametrize(
    "field, value, tensor",
    [
        ("hidden", 10**12, "rnn.weight_ih_l0"),
        ("embedding", 10**12, "embed.weight"),
        ("vocab_size", 10**12, "embed.weight"),
        ("layers", 10**12, "model.layers"),
        ("conditions", [10**12], "condition_embeds.0.weight"),
    ],
)
def test_absurd_size_in_config_is_checked_against_the_weights_header(
    run, capsys, field, value, tensor
):
    edit_json(run / "config.json", lambda d: d["model"].update({field: value}))
    for command in (
        ["generate", run, "--length", "5"],
        ["evaluate", run, run / "samples.md"],
        ["train", "--resume", run, "--epochs", "3"],
    ):
        refused(command, capsys, "config.json", tensor, "restore it or train again")


def test_expected_shapes_match_a_model_with_conditions_and_tied_weights():
    from lstmgen.checkpoint import expected_shapes
    from lstmgen.config import ModelConfig
    from lstmgen.model import LSTMLanguageModel

    for config in (
        ModelConfig(vocab_size=11, embedding=8, hidden=8, layers=2, tie_weights=True),
        ModelConfig(vocab_size=11, embedding=5, hidden=7, layers=3, cell="gru", conditions=(3, 4)),
    ):
        module = LSTMLanguageModel(config)
        actual = {name: tuple(p.shape) for name, p in module.named_parameters()}
        assert expected_shapes(config) == actual


def test_a_fine_tune_checks_its_base_weights_first(run, tmp_path, capsys):
    edit_json(run / "config.json", lambda d: d["model"].update({"hidden": 10**12}))
    corpus = tmp_path / "more.txt"
    corpus.write_text(make_text(5_000, seed=3))
    refused(
        ["train", corpus, "--out", tmp_path / "tuned", "--init-from", run, "--epochs", "1"],
        capsys,
        "config.json",
        "rnn.weight_ih_l0",
    )


# ----- 2, 3, 4: JSON files read within bounds -----------------------------------------------
def test_deeply_nested_config_json(run, capsys):
    (run / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    for command in (["info", run], ["generate", run], ["train", "--resume", run]):
        refused(command, capsys, "config.json", "nested more than", "restore it")


def test_deeply_nested_tokenizer_meta_and_metrics(run, capsys):
    (run / "tokenizer.json").write_text('{"level": ' + "[" * 5_000 + "]" * 5_000 + "}")
    refused(["info", run], capsys, "tokenizer.json", "nested more than")
    shutil.copy(run / "best" / "tokenizer.json", run / "tokenizer.json")
    (run / "data" / "meta.json").write_text('{"a": ' + "[" * 50_000 + "]" * 50_000 + "}")
    refused(["train", "--resume", run, "--epochs", "3"], capsys, "meta.json", "nested more than")
    with open(run / "metrics.jsonl", "a") as f:  # a damaged line is skipped, as a torn one
        f.write("[" * 100_000 + "]" * 100_000 + "\n")
    code, _, err = run_cli(["info", run], capsys)
    assert code == 0 and "Traceback" not in err


def test_json_reader_bounds(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[" * JSON_DEPTH_LIMIT + "]" * JSON_DEPTH_LIMIT)
    assert read_json(path, fix="fix")  # as deep as allowed
    path.write_text("[" * (JSON_DEPTH_LIMIT + 1) + "]" * (JSON_DEPTH_LIMIT + 1))
    with pytest.raises(LstmgenError, match="nested more than"):
        read_json(path, fix="fix")
    path.write_text('{"a": ' + "9" * 5_000 + "}")  # Python refuses such an int: damaged
    with pytest.raises(LstmgenError, match="not valid JSON"):
        read_json(path, fix="fix")
    path.write_bytes(b"x" * 2_000)
    with pytest.raises(LstmgenError, match="more than lstmgen ever writes"):
        read_json(path, fix="fix", limit=1_000)
    with pytest.raises(LstmgenError, match="not a regular file"):
        read_json(tmp_path, fix="fix")
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "gone.json", fix="fix")


@pytest.mark.skipif(not Path("/dev/urandom").exists(), reason="needs /dev/urandom")
def test_tokenizer_symlinked_to_a_device(run, capsys):
    (run / "tokenizer.json").unlink()
    (run / "tokenizer.json").symlink_to("/dev/urandom")
    for command in (["info", run], ["generate", run, "--length", "5"]):
        refused(command, capsys, "tokenizer.json", "not a regular file", "restore it")


def test_metrics_log_symlinked_to_a_device(run, capsys):
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to("/dev/zero")
    refused(["info", run], capsys, "metrics.jsonl", "not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_in_the_run_does_not_hang(run, capsys):
    import subprocess
    import sys

    (run / "data" / "meta.json").unlink()
    os.mkfifo(run / "data" / "meta.json")
    refused(["train", "--resume", run, "--epochs", "3"], capsys, "meta.json", "prepare")
    (run / "tokenizer.json").unlink()
    os.mkfifo(run / "tokenizer.json")  # opening it to read would wait for a writer forever
    done = subprocess.run(
        [sys.executable, "-m", "lstmgen", "info", str(run)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "tokenizer.json is not a regular file" in done.stderr


def test_tokenizer_symlink_loop(run, capsys):
    (run / "tokenizer.json").unlink()
    (run / "tokenizer.json").symlink_to(run / "tokenizer.json")
    refused(["info", run], capsys, "tokenizer.json", "symlink loop")


def test_a_commit_file_cannot_move_files_out_of_the_run(run):
    from lstmgen.files import recover

    outside = run.parent / "outside.txt"
    outside.write_text("keep me")
    pending = run / ".pending"
    pending.mkdir()
    (pending / "COMMIT").write_text(json.dumps(["../../outside.txt"]))
    recover(run)
    assert outside.read_text() == "keep me" and not pending.exists()


# ----- 5, 6: a damaged tokenizer --------------------------------------------------------------
@pytest.mark.parametrize(
    "change, why",
    [
        (lambda d: d["chars"].__setitem__(1, d["chars"][0]), "distinct single characters"),
        (lambda d: d["chars"].__setitem__(1, 5), "distinct single characters"),
        (lambda d: d["chars"].__setitem__(1, ["a"]), "unhashable"),
        (lambda d: d.pop("chars"), "it lacks 'chars'"),
        (lambda d: d.update({"format": "new"}), "unreadable format"),
        (lambda d: d.update({"level": "bpe"}), "tokenizer.json is damaged"),
        (lambda d: d.update({"level": "word", "words": 7}), "tokenizer.json is damaged"),
    ],
)
def test_damaged_tokenizer_is_one_line_naming_it(run, capsys, change, why):
    edit_json(run / "tokenizer.json", change)
    for command in (["info", run], ["generate", run, "--length", "5"]):
        refused(command, capsys, "tokenizer.json", why)


def test_tokenizer_that_is_not_an_object(run, capsys):
    (run / "tokenizer.json").write_text("[1, 2]")
    refused(["info", run], capsys, "tokenizer.json", "not a JSON object")


# ----- 7, 8: sizes checked before the model is built -----------------------------------------
def test_hidden_beyond_64_bits_is_a_usage_error(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(5_000))
    refused(
        ["train", corpus, "--out", tmp_path / "r", "--hidden", "99999999999999999999"],
        capsys,
        "'--hidden'",
        "99999999999999999999 is too large",
    )
    refused(["generate", tmp_path, "--seed", str(2**64)], capsys, "'--seed'", "too large")
    assert not (tmp_path / "r").exists()


def test_hidden_that_cannot_fit_in_memory_is_refused_before_preparing(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(5_000))
    line = refused(
        ["train", corpus, "--out", tmp_path / "r", "--hidden", "100000"],
        capsys,
        "2×100000 LSTM",
        "GB to train",
        "more than this machine's memory",
        "--hidden",
    )
    assert "parameters" in line
    assert not (tmp_path / "r").exists()


def test_the_api_refuses_a_model_beyond_memory_with_the_vocabulary(tmp_path, monkeypatch):
    import lstmgen
    import lstmgen.run.session as session

    monkeypatch.setattr(session, "machine_memory_bytes", lambda: 10**6)  # 1 MB, after prepare
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(5_000))
    with pytest.raises(LstmgenError, match=r"needs about .* GB to train .*more than this"):
        lstmgen.train([corpus], out=tmp_path / "r", hidden=64, quiet=True, device="cpu")


def test_memory_estimate_is_not_below_the_weights():
    from lstmgen.config import ModelConfig
    from lstmgen.config.memory import training_bytes, weights_bytes

    model = ModelConfig(vocab_size=65, hidden=256, layers=2)
    assert weights_bytes(model) == 4 * model.parameter_count()
    assert training_bytes(model, 16, 32) > 4 * weights_bytes(model)


def test_loading_refuses_a_model_beyond_memory(run, monkeypatch):
    import lstmgen
    import lstmgen.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "machine_memory_bytes", lambda: 1_000)
    with pytest.raises(LstmgenError, match=r"needs about .* to load, more than this machine"):
        lstmgen.load(run)


# ----- 11: a level that is not one ------------------------------------------------------------
def test_level_in_config_must_be_a_level(run, capsys):
    edit_json(run / "config.json", lambda d: d.update({"level": "../../x"}))
    for command in (["info", run], ["generate", run, "--length", "3"]):
        refused(command, capsys, "config.json", "'../../x'", "char, word, bpe")


# ----- 9: many samples are made in batches that fit --------------------------------------------
def test_many_samples_are_made_in_batches_with_the_same_texts(trained_run, capsys, monkeypatch):
    from lstmgen.config import ModelConfig
    from lstmgen.console import samples_per_batch
    from lstmgen.inference import Model

    # a hundred million samples of the default model go about ten thousand at a time
    assert 1_000 < samples_per_batch(ModelConfig(vocab_size=65)) < 100_000
    assert samples_per_batch(ModelConfig(vocab_size=10**7, hidden=4096)) == 1
    args = ["generate", trained_run, "--num-samples", "7", "--length", "12", "--seed", "5"]
    _, whole_text, _ = run_cli(args, capsys)
    _, whole_jsonl, _ = run_cli([*args, "--format", "jsonl"], capsys)
    sizes = []
    stream_samples = Model.stream_samples

    def counted(self, prime="", settings=None, **more):
        sizes.append(settings.num_samples)
        return stream_samples(self, prime, settings, **more)

    monkeypatch.setattr(Model, "stream_samples", counted)
    monkeypatch.setattr("lstmgen.console.SAMPLE_BATCH_BYTES", 25_000)  # 2 samples a batch
    code, batched_text, _ = run_cli(args, capsys)
    assert code == 0 and batched_text == whole_text and sizes == [2, 2, 2, 1]
    code, batched_jsonl, _ = run_cli([*args, "--format", "jsonl"], capsys)
    assert code == 0
    assert [json.loads(line)["text"] for line in batched_jsonl.splitlines()] == [
        json.loads(line)["text"] for line in whole_jsonl.splitlines()
    ]


def test_batches_of_a_conditioned_run_draw_conditions_as_one_seeded_set(tmp_path, monkeypatch):
    import csv
    import io
    import random

    import lstmgen
    from lstmgen.config import SampleConfig
    from lstmgen.console import write_jsonl

    rng = random.Random(0)
    with open(tmp_path / "t.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "a", "b"])
        for _ in range(200):
            writer.writerow(
                [make_text(120, seed=rng.randrange(99)), rng.choice("xyz"), rng.choice("pq")]
            )
    lstmgen.train(
        [tmp_path / "t.csv"],
        out=tmp_path / "run",
        column="text",
        condition_column=["a", "b"],
        max_steps=10,
        quiet=True,
        **{k: v for k, v in TINY.items() if k != "dropout"},
    )
    model = lstmgen.load(tmp_path / "run")
    settings = SampleConfig(num_samples=9, length=15, seed=3)
    rows, sample_text = [], lstmgen.inference.sample_text

    def recorded(*args, conditions=None, first_sample=0, **more):
        rows.append((first_sample, conditions))
        return sample_text(*args, conditions=conditions, first_sample=first_sample, **more)

    monkeypatch.setattr("lstmgen.inference.sample_text", recorded)
    monkeypatch.setattr("lstmgen.console.SAMPLE_BATCH_BYTES", 25_000)  # 2 samples a batch
    made = []
    for _ in range(2):
        out = io.StringIO()
        write_jsonl(model, "", settings, out)
        made.append([json.loads(line)["text"] for line in out.getvalue().splitlines()])
    assert made[0] == made[1] and len(made[0]) == 9  # the same seed, the same set
    assert [first for first, _ in rows[:5]] == [0, 2, 4, 6, 8]
    assert np.array_equal(rows[0][1], model.condition_rows(None, 2, 3))  # as made alone
    drawn = np.concatenate([r for _, r in rows[:5]])
    assert len(np.unique(drawn, axis=0)) > 1  # each batch draws its own


# ----- 10: an address the server cannot listen on -------------------------------------------
@pytest.mark.parametrize("host", ["999.1.1.1", "no-such-host.invalid"])
def test_serve_on_an_impossible_host_is_one_line(trained_run, capsys, host):
    pytest.importorskip("uvicorn")
    refused(["serve", trained_run, "--host", host], capsys, f"--host {host}", "127.0.0.1")


def test_serve_on_a_port_in_use_is_one_line(trained_run, capsys):
    pytest.importorskip("uvicorn")
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused(["serve", trained_run, "--port", port], capsys, f"--port {port} is already in use")


# ----- 11: the small ones ---------------------------------------------------------------------
def test_a_foreign_pickle_as_trainer_state_is_our_words_only(run, capsys):
    import pickle

    class Planted:
        def __reduce__(self):
            return (os.system, ("echo planted > planted.txt",))

    (run / "trainer_state.pt").write_bytes(pickle.dumps(Planted(), protocol=4))
    line = refused(
        ["train", "--resume", run, "--epochs", "3"],
        capsys,
        "trainer_state.pt",
        "other than tensors",
    )
    assert "Weights only load failed" not in line and not Path("planted.txt").exists()


def test_a_full_disk_before_any_checkpoint_says_none_was_saved(tmp_path, capsys, monkeypatch):
    import errno

    def full(model, path, progress):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("lstmgen.run.saving.save_weights", full)
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(5_000))
    run = tmp_path / "run"
    args = ["--epochs", "1", "-q", "--hidden", "16", "--embedding", "8", "--layers", "1"]
    line = refused(["train", corpus, "--out", run, *args], capsys, "the disk is full")
    assert "none was saved there yet" in line and "previous one" not in line
    line = refused(["train", "--resume", run, "-q"], capsys, "the disk is full")
    assert "none was saved there yet" in line


def test_extreme_sampling_values_warn_of_nothing_and_never_draw_a_banned_token():
    import itertools
    import warnings

    from lstmgen.config import SampleConfig
    from lstmgen.sampling.sampler import adjust_logits, choose

    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(3, 20)) * 5).astype(np.float32)
    recent = np.zeros((3, 20), np.int32)
    recent[:, :15] = 1
    values = itertools.product(
        [0, 1e-3, 1.1e-3, 1, 1e30, 1e300],  # temperature
        [None, 1, 20],  # top_k
        [None, 1e-300, 1e-40, 0.5, 1],  # top_p
        [1e-300, 1e-30, 1, 1e30, 1e300],  # repetition penalty
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for temperature, top_k, top_p, penalty in values:
            config = SampleConfig(
                temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=penalty
            )
            adjusted = adjust_logits(logits, config, recent, banned=[0])
            ids = choose(adjusted, config, np.array([0.5, 0.99, 0.0]))
            alone = choose(adjusted[:1], config, np.array([0.99]))
            assert ((ids > 0) & (ids < 20)).all() and 0 < alone[0] < 20


@pytest.fixture(scope="module")
def api(trained_run):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from lstmgen.serve import create_app

    with TestClient(create_app([trained_run], max_tokens=50)) as client:
        yield client


@pytest.mark.parametrize(
    "field, value",
    [("max_tokens", True), ("n", "2"), ("seed", "1"), ("temperature", "1"), ("stream", 1)],
)
def test_the_request_schema_takes_no_coerced_values(api, field, value):
    reply = api.post("/v1/completions", json={"prompt": "a", "max_tokens": 3, field: value})
    error = reply.json()["error"]
    assert reply.status_code == 422 and error["param"] == field and field in error["message"]


def test_extreme_request_values_are_answered_without_warnings(api):
    import warnings

    body = {"prompt": "The", "max_tokens": 8, "n": 2, "seed": 1, "temperature": 1e300}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for extra in ({"top_p": 1e-300}, {"repetition_penalty": 1e300}, {"temperature": 1}):
            reply = api.post(
                "/v1/completions", json={**body, **extra, "repetition_penalty": 1e-300}
            )
            assert reply.status_code == 200, reply.text
            assert [len(c["text"]) for c in reply.json()["choices"]] == [8, 8]
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
