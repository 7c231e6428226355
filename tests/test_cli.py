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
    big = tmp / "big"  # "hidden": "big" in config.json
    shutil.copytree(run, big)
    config = json.loads((big / "config.json").read_text())
    (big / "config.json").write_text(
        json.dumps({**config, "model": {**config["model"], "hidden": "big"}})
    )
    shapeless = tmp / "shapeless"  # config.json without model.hidden
    shutil.copytree(run, shapeless)
    del config["model"]["hidden"]
    (shapeless / "config.json").write_text(json.dumps(config))
    best_empty = tmp / "best_empty"  # a 0-byte best/model.safetensors
    shutil.copytree(run, best_empty)
    (best_empty / "best" / "model.safetensors").write_bytes(b"")
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
        ("hidden not a number: generate", ["generate", big], "config.json: model.hidden is 'big'"),
        ("hidden not a number: info", ["info", big], "config.json: model.hidden is 'big'"),
        (
            "hidden not a number: resume",
            ["train", "--resume", big],
            "config.json: model.hidden is 'big', which is not a whole number",
        ),
        ("config without model.hidden", ["info", shapeless], "config.json lacks model.hidden"),
        (
            "out under a file",
            ["train", "python-docs", "--out", tmp / "empty.txt" / "run"],
            "empty.txt is a file, not a folder; choose another --out",
        ),
        (
            "store under a file",
            ["prepare", "python-docs", "--out", tmp / "empty.txt" / "store"],
            "empty.txt is a file, not a folder; choose another --out",
        ),
        (
            "empty best weights",
            ["generate", best_empty],
            "best/model.safetensors is damaged (Error while deserializing header: header too "
            "small); generate from the latest weights (--checkpoint latest) or retrain",
        ),
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
    code, out, err = run_cli(
        ["train", corpus, "--out", tmp_path / "run", "--epochs", "2", *TINY_FLAGS], capsys
    )
    assert code == 0 and "Generate with: lstmgen generate" in out
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


def train_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("stopped ("))


def test_quiet_prints_only_the_summary_on_stdout_and_info_counts_in_words(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(4_000))
    run = tmp_path / "run"
    code, out, err = run_cli(
        ["train", corpus, "--out", run, "--epochs", "1", "-q", *TINY_FLAGS], capsys
    )
    assert code == 0 and not err
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stopped (epochs) after "), out
    assert lines[0].endswith(f"Generate with: lstmgen generate {run}")
    code, out, _ = run_cli(["info", run], capsys)
    assert code == 0 and ", 1 epoch, " in out and "1 epochs" not in out


def test_final_and_best_held_out_are_both_reported(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(20_000))
    run = tmp_path / "run"
    code, out, _ = run_cli(
        ["train", corpus, "--out", run, "--max-steps", "25", *TINY_FLAGS], capsys
    )
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last, best = metrics[-1], min(metrics, key=lambda row: row["val_bpc"])
    assert code == 0 and last["step"] == 25  # a run that ends mid-epoch is measured where it ends
    assert (
        f"held-out {last['val_bpc']:.4f} bits/char at the end, best {best['val_bpc']:.4f} "
        f"(step {best['step']})" in train_line(out)
    )
    code, out, _ = run_cli(["info", run, "--json"], capsys)
    info = json.loads(out)
    assert (
        info["last_val_step"] == 25 and round(info["last_val_bits_per_char"], 5) == last["val_bpc"]
    )
    assert round(info["best_val_bits_per_char"], 5) == best["val_bpc"]
    code, out, _ = run_cli(["info", run], capsys)
    assert f"final held-out  {last['val_bpc']:.4f} bits/char (step 25)" in out


def test_info_json_includes_the_records_of_sizing_lr_finder_and_embeddings(run_copy, capsys):
    config = json.loads((run_copy / "config.json").read_text())
    records = {
        "sizing": {"hidden": 32, "parameters": 8017, "tokens_per_s": 9000, "limited_by": "time"},
        "lr_finder": {"rates": [1e-4, 1e-3], "losses": [3.0, 2.5], "suggestion": 1e-4},
        "embeddings": {"file": "v.txt", "vocabulary_coverage": 0.9, "token_coverage": 0.95},
    }
    (run_copy / "config.json").write_text(json.dumps({**config, **records}))
    code, out, _ = run_cli(["info", run_copy, "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and {k: info[k] for k in records} == records
    code, out, _ = run_cli(["info", run_copy], capsys)
    assert "hidden 32 chosen for --max-time" in out and "peak lr 0.0001" in out
    assert "90.0% of the vocabulary" in out


def test_version(capsys):
    from lstmgen import __version__

    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out == f"lstmgen {__version__}\n"


@pytest.mark.parametrize(
    "command", [[], ["prepare"], ["train"], ["generate"], ["evaluate"], ["info"]]
)
def test_help_shows_no_value_after_a_flag(command, capsys):
    code, out, _ = run_cli([*command, "--help"], capsys)
    assert code == 0 and "--help" in out and "<bool>" not in out
    if command == ["train"]:
        quiet = next(line for line in out.splitlines() if "--quiet" in line)
        assert "-q" in quiet and "<" not in quiet


def test_resuming_a_finished_run_says_which_limit_to_raise(run_copy, capsys):
    before = fingerprint(run_copy)
    code, out, err = run_cli(["train", "--resume", run_copy], capsys)
    assert code == 0 and not err
    assert out.strip() == (
        f"{run_copy} already reached its limit (--epochs 2) at step {read_step(run_copy):,}; "
        f"nothing was trained. To train on, raise it, e.g. lstmgen train --resume {run_copy} "
        "--epochs 4 (--epochs, --max-time and --max-steps are the run's totals)"
    )
    code, out, _ = run_cli(["train", "--resume", run_copy, "--max-steps", "3", "-q"], capsys)
    assert (
        code == 0 and "(--max-steps 3)" in out and f"--max-steps {2 * read_step(run_copy)}" in out
    )
    assert fingerprint(run_copy) == before


def read_step(run: Path) -> int:
    from lstmgen.files import read_progress

    return read_progress(run / "model.safetensors")["step"]


def test_resume_line_gives_the_epoch_as_the_step_lines_do_and_no_train_none(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(20_000))
    run = tmp_path / "run"
    code, _, _ = run_cli(["train", corpus, "--out", run, "--max-steps", "21", *TINY_FLAGS], capsys)
    assert code == 0
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["step"] == 21
    code, _, err = run_cli(["train", "--resume", run, "--max-steps", "24"], capsys)
    assert code == 0
    assert f"resuming {run} at step 21 (epoch {row['epoch']:.2f}, " in err, err
    step_line = next(line for line in err.splitlines() if line.startswith("step 24 "))
    assert "None" not in step_line and " train " in step_line, step_line


def test_a_damaged_metrics_line_is_dropped_with_one_warning(run_copy, capsys):
    assert (run_copy / "metrics.jsonl").read_text().endswith("}\n")
    with open(run_copy / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "val_lo')  # cut short by a crash
    code, _, err = run_cli(["train", "--resume", run_copy, "-q"], capsys)
    assert code == 0 and err.count("warning") == 1
    assert "dropped 1 damaged line of" in err and "metrics.jsonl" in err
    assert '"val_lo\n' not in (run_copy / "metrics.jsonl").read_text()


def test_latest_weights_damaged_points_to_best(run_copy, capsys):
    (run_copy / "model.safetensors").write_bytes(b"")
    code, _, err = run_cli(["generate", run_copy, "--checkpoint", "latest"], capsys)
    assert code == 2 and "generate from the best/ weights (--checkpoint best)" in err


def test_disk_full_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(
    run_copy, capsys, monkeypatch
):
    import errno

    def full(state, path):
        path.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("lstmgen.run.saving.save_trainer_state", full)
    step = read_step(run_copy)
    code, _, err = run_cli(["train", "--resume", run_copy, "--max-steps", step + 3], capsys)
    errors = [line for line in err.splitlines() if line.startswith("lstmgen: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err
    assert errors[0] == (
        f"lstmgen: error: the disk is full: the checkpoint could not be written to {run_copy} "
        "(the previous one there is whole); free some space, then continue with: "
        f"lstmgen train --resume {run_copy}"
    )
    assert not (run_copy / ".pending").exists() and read_step(run_copy) == step
    from lstmgen.checkpoint import load_trainer_state

    assert int(load_trainer_state(run_copy / "trainer_state.pt")["step"]) == step


def test_read_only_run_or_out_is_one_line(run_copy, tmp_path, capsys, monkeypatch):
    import errno
    import os as os_module

    access = os_module.access

    def read_only(path, mode, **kwargs):  # as os.access says on a read-only file system
        inside = str(path).startswith(str(run_copy))
        return False if inside and mode & os_module.W_OK else access(path, mode, **kwargs)

    monkeypatch.setattr(os_module, "access", read_only)
    code, _, err = run_cli(["train", "--resume", run_copy], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"{run_copy} is read-only ({run_copy} cannot be written); copy the run" in err
    monkeypatch.undo()

    mkdir = Path.mkdir
    locked = tmp_path / "locked"

    def refuse(self, *args, **kwargs):
        if str(self).startswith(str(locked)):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    locked.mkdir()
    monkeypatch.setattr(Path, "mkdir", refuse)
    code, _, err = run_cli(["train", "python-docs", "--out", locked / "a" / "run"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"no permission to write in {locked}; choose another --out" in err


def test_disk_full_while_appending_metrics_is_one_line(run_copy, capsys, monkeypatch):
    import errno

    def full(self, trainer, val_nats, improved):
        raise OSError(errno.ENOSPC, "No space left on device", str(run_copy / "metrics.jsonl"))

    monkeypatch.setattr("lstmgen.training.report.RunReporter.on_eval", full)
    step = read_step(run_copy)
    code, _, err = run_cli(["train", "--resume", run_copy, "--max-steps", step + 2, "-q"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "the disk is full: " in err and "metrics.jsonl could not be written" in err
    assert read_step(run_copy) == step


def test_a_word_run_with_max_time_says_why_its_size_was_kept(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(8_000), encoding="utf-8")
    code, _, err = run_cli(
        [
            "train",
            corpus,
            "--out",
            tmp_path / "run",
            "--level",
            "word",
            "--max-time",
            "1h",
            "--max-steps",
            "2",
            "--embedding",
            "16",
            "--layers",
            "1",
            "--batch-size",
            "4",
            "--seq-len",
            "8",
        ],
        capsys,
    )
    assert code == 0
    assert (
        "model: 1×256, the default size: --max-time sizing is measured at the char level "
        "only, not word (--hidden sets the size)"
    ) in err
