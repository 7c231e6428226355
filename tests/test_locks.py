"""One writer per run directory: a second trainer, or a second creator of the same --out, gets
a one-line error; the OS lock dies with its holder, so it never goes stale."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import make_text
from lstmgen.cli import main
from lstmgen.errors import LstmgenError
from lstmgen.files import locked, staged

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fcntl locks are POSIX only")

TINY_FLAGS = ["--hidden", "32", "--embedding", "16", "--layers", "1"]
TINY_FLAGS += ["--batch-size", "4", "--seq-len", "16"]


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def one_error(err: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("lstmgen: error:")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture
def run_copy(trained_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(trained_run, target)
    return target


def test_a_second_trainer_of_a_run_is_refused(run_copy, capsys):
    with locked(run_copy):  # as a trainer in another process holds it
        code, _, err = run_cli(["train", "--resume", run_copy, "--epochs", "3"], capsys)
        assert code == 2 and one_error(err) == (
            f"lstmgen: error: another lstmgen is training {run_copy} right now; wait for it to "
            "finish (or stop it), then try again"
        )
        code, _, err = run_cli(
            ["train", "python-docs", "--out", run_copy, "--overwrite", "--max-steps", "1"], capsys
        )
        assert code == 2 and f"another lstmgen is training {run_copy}" in one_error(err)
    assert not (run_copy / ".pending").exists()
    code, _, err = run_cli(["train", "--resume", run_copy, "--max-steps", "1", "-q"], capsys)
    assert code == 0, err  # the lock went with its holder


def test_a_killed_holder_leaves_no_lock_behind(run_copy):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDONLY | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(120)\n",
            str(run_copy / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(LstmgenError, match="another lstmgen is training"), locked(run_copy):
            pass
    finally:
        holder.kill()  # SIGKILL: no clean-up of its own
        holder.wait()
    with locked(run_copy):
        pass


def test_two_creators_of_one_out_one_line_not_a_traceback(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(6_000))
    out = tmp_path / "run"
    with staged(out, "staging") as staging:  # another lstmgen is building out right now
        (staging / "data").mkdir()
        code, _, err = run_cli(["train", corpus, "--out", out, "--max-steps", "1"], capsys)
        assert code == 2 and one_error(err) == (
            f"lstmgen: error: another lstmgen is creating {out} right now; wait for it to "
            "finish or choose another --out"
        )
        assert (staging / "data").is_dir()  # its work was left alone
    assert not out.exists() or not any(out.iterdir()) or (out / "data").is_dir()


def test_a_staging_folder_left_by_a_killed_creator_is_replaced(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(6_000))
    left = tmp_path / ".run.staging"  # kill -9 during creation leaves it, with nobody holding it
    (left / "data").mkdir(parents=True)
    (left / "data" / "train.bin").write_bytes(b"\1\2")
    (left / ".lock").touch()
    code, _, err = run_cli(
        ["train", corpus, "--out", tmp_path / "run", "--max-steps", "1", "-q", *TINY_FLAGS], capsys
    )
    assert code == 0, err
    assert not left.exists() and (tmp_path / "run" / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt", "run"]


def test_two_processes_creating_the_same_out_at_once(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(200_000))
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "lstmgen", "train", str(corpus), "--out", str(out)]
    argv += ["--max-steps", "2", "-q", *TINY_FLAGS]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [
        subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in processes]
    for process in processes:
        process.stderr.close()
    assert sorted(code for code, _ in results) == [0, 2], results
    _, err = next(r for r in results if r[0] == 2)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert any(
        text in err
        for text in ("another lstmgen is creating", "another lstmgen is training", "already holds")
    ), err
    assert (out / "config.json").is_file()
