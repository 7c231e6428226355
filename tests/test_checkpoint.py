"""Checkpoints are atomic: a crash at any instant leaves the previous or the new one, whole."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import lstmgen
from lstmgen.checkpoint import load_trainer_state, read_progress, recover, write_checkpoint

from conftest import TINY, make_text


def writer(text):
    return lambda path: path.write_text(text)


def test_uncommitted_pending_files_are_discarded(tmp_path):
    write_checkpoint(tmp_path, {"a": writer("old a"), "b": writer("old b")})
    pending = tmp_path / ".pending"
    pending.mkdir()
    (pending / "a").write_text("new a")  # a crash before COMMIT
    recover(tmp_path)
    assert (tmp_path / "a").read_text() == "old a" and not pending.exists()


def test_readers_leave_a_pending_write_alone(tmp_path):
    write_checkpoint(tmp_path, {"a": writer("old a")})
    (tmp_path / ".pending").mkdir()
    (tmp_path / ".pending" / "a").write_text("being written by a trainer")
    recover(tmp_path, discard_uncommitted=False)  # what generate / info do
    assert (tmp_path / ".pending" / "a").exists() and (tmp_path / "a").read_text() == "old a"


def test_committed_pending_files_are_rolled_forward(tmp_path):
    write_checkpoint(tmp_path, {"a": writer("old a"), "b": writer("old b")})
    pending = tmp_path / ".pending"
    pending.mkdir()
    (pending / "b").write_text("new b")  # "a" was already moved when the crash came
    (tmp_path / "a").write_text("new a")
    (pending / "COMMIT").write_text(json.dumps(["a", "b"]))
    recover(tmp_path)
    assert [(tmp_path / n).read_text() for n in "ab"] == ["new a", "new b"] and not pending.exists()


def checkpoint_is_consistent(run):
    recover(run)
    step = read_progress(run / "model.safetensors")["step"]
    assert int(load_trainer_state(run / "trainer_state.pt")["step"]) == step
    lstmgen.load(run, checkpoint="latest")
    if (run / "best").exists():
        lstmgen.load(run, checkpoint="best")
    return step


# A child process that resumes training and SIGKILLs itself at the k-th filesystem
# operation of checkpoint writing (k < 0: never; the test kills it from outside).
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import lstmgen.checkpoint as ck
    kill_at = int(sys.argv[2])
    calls = [0]
    def counted(function):
        def wrapper(*args, **kwargs):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return function(*args, **kwargs)
        return wrapper
    ck._fsync_file = counted(ck._fsync_file)
    ck.os.replace = counted(os.replace)
    ck.save_weights = counted(ck.save_weights)
    ck.save_trainer_state = counted(ck.save_trainer_state)
    import lstmgen.api as api
    api.save_weights, api.save_trainer_state = ck.save_weights, ck.save_trainer_state
    import lstmgen
    lstmgen.train(out=sys.argv[1], resume=True, quiet=True)
    """
)


@pytest.mark.slow
def test_sigkill_at_random_moments_never_breaks_resume(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(6_000), encoding="utf-8")
    run = tmp_path / "run"
    # Epochs of ~20 steps: a checkpoint every fraction of a second, so kills land in writes often.
    lstmgen.train([corpus], out=run, epochs=100_000, max_steps=1, quiet=True, **dict(TINY, batch_size=8))
    config = json.loads((run / "config.json").read_text())
    config["train"]["max_steps"] = None
    (run / "config.json").write_text(json.dumps(config))
    rng = random.Random(0)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    steps, kills = [checkpoint_is_consistent(run)], 0
    for attempt in range(24):
        if attempt % 2 == 0:  # inside a checkpoint write: the k-th of its file operations
            child = subprocess.Popen([sys.executable, "-c", CHILD, str(run), str(rng.randint(1, 40))], env=env)
            child.wait(timeout=120)
        else:  # from outside, at a random moment
            child = subprocess.Popen([sys.executable, "-c", CHILD, str(run), "-1"], env=env)
            time.sleep(rng.uniform(2.0, 4.0))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
        kills += child.returncode == -signal.SIGKILL
        steps.append(checkpoint_is_consistent(run))
    assert kills >= 20
    assert steps[-1] > steps[0]  # training made progress across the kills
    result = lstmgen.train(out=run, resume=True, max_steps=steps[-1] + 5, quiet=True)
    assert result.steps == steps[-1] + 5
