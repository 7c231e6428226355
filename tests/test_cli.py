"""The `lstmgen` command end to end: exit codes, one-line errors, signals."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_text
from lstmgen.cli import main

TINY_FLAGS = [
    "--hidden",
    "32",
    "--embedding",
    "16",
    "--layers",
    "1",
    "--batch-size",
    "4",
    "--seq-len",
    "16",
]


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def fingerprint(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def run_copy(trained_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(trained_run, target)
    return target


def bad_inputs(tmp: Path, run: Path):
    """(name, argv, expected message fragment); files they need are made here."""
    (tmp / "empty.txt").write_text("")
    (tmp / "bin").mkdir()
    (tmp / "bin" / "x.dat").write_bytes(b"\0\1\2\3")
    (tmp / "tiny.txt").write_text("just a few words")
    (tmp / "latin1.txt").write_bytes("na\xefve caf\xe9 ".encode("latin-1") * 20)
    (tmp / "incomplete").mkdir()
    (tmp / "incomplete" / "tokenizer.json").write_text("{}")
    truncated = tmp / "truncated"
    shutil.copytree(run, truncated)
    for name in ("model.safetensors", "best/model.safetensors"):
        with open(truncated / name, "r+b") as f:
            f.truncate(100)
    newer = tmp / "newer"
    shutil.copytree(run, newer)
    config = json.loads((newer / "config.json").read_text())
    (newer / "config.json").write_text(json.dumps({**config, "format": 99}))
    no_state = tmp / "no_state"
    shutil.copytree(run, no_state)
    (no_state / "trainer_state.pt").write_bytes(b"PK\3\4 not really a zip")
    out = tmp / "out"
    return [
        ("missing path", ["train", tmp / "nope.txt", "--out", out], "nope.txt does not exist"),
        ("empty corpus", ["train", tmp / "empty.txt", "--out", out], "the corpus is empty"),
        ("folder without text", ["train", tmp / "bin", "--out", out], "has no text files"),
        (
            "corpus too small",
            ["train", tmp / "tiny.txt", "--out", out],
            "too few for one sequence of --seq-len",
        ),
        (
            "invalid utf-8",
            ["train", tmp / "latin1.txt", "--out", out],
            "latin1.txt: invalid utf-8 at byte offset 2",
        ),
        (
            "unknown encoding",
            ["train", tmp / "latin1.txt", "--out", out, "--encoding", "klingon"],
            "unknown encoding",
        ),
        ("missing --out", ["train", tmp / "latin1.txt"], "missing --out"),
        (
            "bad duration",
            ["train", "python-docs", "--out", out, "--max-time", "soon"],
            "cannot read the duration",
        ),
        (
            "bad val fraction",
            ["train", "python-docs", "--out", out, "--val-fraction", "1.5"],
            "--val-fraction",
        ),
        ("no cuda", ["train", "python-docs", "--out", out, "--device", "cuda:0"], "no CUDA GPU"),
        ("run exists", ["train", "python-docs", "--out", run], "already holds a run"),
        (
            "overwrite with a bad source",
            ["train", tmp / "nope.txt", "--out", run, "--overwrite"],
            "nope.txt does not exist",
        ),
        (
            "overwrite with invalid text",
            ["train", tmp / "latin1.txt", "--out", run, "--overwrite"],
            "invalid utf-8",
        ),
        ("out is a file", ["train", "python-docs", "--out", tmp / "empty.txt"], "is a file"),
        (
            "negative seed",
            ["train", "python-docs", "--out", out, "--seed", "-1"],
            "--seed -1 must be",
        ),
        (
            "lr and lr finder",
            ["train", "python-docs", "--out", out, "--lr", "0.01", "--lr-finder"],
            "give --lr or --lr-finder, not both",
        ),
        (
            "negative activation reg",
            ["train", "python-docs", "--out", out, "--activation-reg", "-1"],
            "--activation-reg -1.0 must be",
        ),
        (
            "zero grad clip",
            ["train", "python-docs", "--out", out, "--grad-clip", "0"],
            "--grad-clip 0.0 must be",
        ),
        (
            "infinite temperature",
            ["generate", run, "--temperature", "inf"],
            "--temperature inf must be",
        ),
        ("resume missing run", ["train", "--resume", tmp / "nowhere"], "does not exist"),
        ("resume damaged state", ["train", "--resume", no_state], "trainer_state.pt is damaged"),
        ("missing run", ["generate", tmp / "nowhere"], "does not exist"),
        ("incomplete run", ["generate", tmp / "incomplete"], "not a complete lstmgen run"),
        ("truncated weights", ["generate", truncated], "is damaged"),
        ("newer format", ["generate", newer], "newer lstmgen (format 99"),
        (
            "negative temperature",
            ["generate", run, "--temperature", "-0.5"],
            "--temperature -0.5 must be",
        ),
        ("top-p zero", ["generate", run, "--top-p", "0"], "--top-p 0.0 must be in (0, 1]"),
        ("top-p above one", ["generate", run, "--top-p", "1.2"], "--top-p 1.2 must be in (0, 1]"),
        ("negative length", ["generate", run, "--length", "-3"], "--length -3 must be"),
        ("not a number", ["generate", run, "--length", "many"], "Invalid value for '--length'"),
        (
            "unknown option",
            ["generate", run, "--tempurature", "1"],
            "No such option: --tempurature",
        ),
        ("unknown command", ["trian", "x"], "No such command"),
        ("evaluate missing file", ["evaluate", run, tmp / "gone.txt"], "gone.txt does not exist"),
        ("info of no run", ["info", tmp / "nowhere"], "does not exist"),
    ]


def test_bad_input_gives_one_line_exit_2_and_harms_nothing(run_copy, tmp_path, capsys):
    before = fingerprint(run_copy)
    for name, argv, fragment in bad_inputs(tmp_path, run_copy):
        code, out, err = run_cli(argv, capsys)
        lines = err.strip().splitlines()
        errors = [line for line in lines if line.startswith("lstmgen: error:")]
        assert code == 2, (name, code, err)
        assert len(errors) == 1 and fragment in errors[0], (name, err)
        assert "Traceback" not in err, name
        assert not (tmp_path / "out").exists(), name  # no half-made run is left behind
    assert fingerprint(run_copy) == before  # the existing run was not touched


def test_bare_command_prints_help(capsys):
    code, out, err = run_cli([], capsys)
    assert code == 0 and "train" in out and "generate" in out and not err


def test_train_generate_evaluate_info(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(20_000))
    code, _, err = run_cli(
        ["train", corpus, "--out", tmp_path / "run", "--epochs", "2", *TINY_FLAGS], capsys
    )
    assert code == 0 and "Generate with: lstmgen generate" in err
    code, out, _ = run_cli(
        ["generate", tmp_path / "run", "--prime", "The ", "--length", "50", "--seed", "1"], capsys
    )
    assert code == 0 and out.startswith("The ") and len(out) == len("The ") + 50 + 1
    code, again, _ = run_cli(
        ["generate", tmp_path / "run", "--prime", "The ", "--length", "50", "--seed", "1"], capsys
    )
    assert code == 0 and again == out
    code, out, _ = run_cli(
        ["generate", tmp_path / "run", "--num-samples", "3", "--length", "20"], capsys
    )
    assert code == 0 and out.count("----- sample") == 3
    code, out, _ = run_cli(["evaluate", tmp_path / "run", corpus, "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and set(result) >= {"nats_per_char", "bits_per_char", "perplexity"}
    code, out, _ = run_cli(["info", tmp_path / "run", "--json"], capsys)
    info = json.loads(out)
    assert (
        code == 0
        and info["epochs"] == 2
        and info["parameters"] > 0
        and info["best_val_bits_per_char"] > 0
    )
    code, out, _ = run_cli(["info", tmp_path / "run"], capsys)
    assert code == 0 and "best held-out" in out


def test_stdin_source(tmp_path, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(make_text(8_000).encode())))
    code, _, _ = run_cli(
        ["train", "-", "--out", tmp_path / "run", "--max-steps", "3", "-q", *TINY_FLAGS], capsys
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (
        code == 0
        and config["data"]["sources"] == ["<stdin>"]
        and not (tmp_path / "run" / ".stdin").exists()
    )


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_and_exits_130(tmp_path, capsys, sig):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(8_000))  # epochs of ~110 steps: the first checkpoint comes soon
    run = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lstmgen",
            "train",
            str(corpus),
            "--out",
            str(run),
            "--epochs",
            "1000",
            "-q",
            *TINY_FLAGS,
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    deadline = time.time() + 60
    while (
        not (run / "model.safetensors").exists() and time.time() < deadline
    ):  # wait for the first epoch
        time.sleep(0.1)
    time.sleep(0.3)  # and into training
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"Resume with: lstmgen train --resume {run}" in err and "Traceback" not in err
    # Resumable (max-steps already reached: stops at once); in this process, to spare a start.
    code, _, err = run_cli(["train", "--resume", run, "--max-steps", "1", "-q"], capsys)
    assert code == 0, err


def test_console_script_help_and_usage_error():
    lstmgen = Path(sys.executable).parent / "lstmgen"
    assert lstmgen.exists(), "install the package (make test does) so the console script exists"
    ok = subprocess.run([str(lstmgen), "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "train" in ok.stdout and "generate" in ok.stdout
    bad = subprocess.run([str(lstmgen), "generate"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Missing argument" in bad.stderr
