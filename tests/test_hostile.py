"""Hostile files and extreme values (issue 26): each is refused with one line naming the file or
value and what to do, exit code 2 and no traceback, before anything big is allocated."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import make_text
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
def test_meta_json_as_a_fifo_does_not_hang(run, capsys):
    (run / "data" / "meta.json").unlink()
    os.mkfifo(run / "data" / "meta.json")
    refused(["train", "--resume", run, "--epochs", "3"], capsys, "meta.json", "prepare")


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


# ----- 11: a level that is not one ------------------------------------------------------------
def test_level_in_config_must_be_a_level(run, capsys):
    edit_json(run / "config.json", lambda d: d.update({"level": "../../x"}))
    for command in (["info", run], ["generate", run, "--length", "3"]):
        refused(command, capsys, "config.json", "'../../x'", "char, word, bpe")
