"""Checkpoints are atomic: a crash at any instant leaves the previous or the new one, whole."""

import errno
import json
import multiprocessing
import os
import random
import signal
import stat
import time

import pytest
import torch

import lstmgen
from conftest import TINY, make_text
from lstmgen.checkpoint import load_trainer_state
from lstmgen.files import DiskFull, read_progress, recover, write_checkpoint


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


def resume_and_die(run, kill_at: int) -> None:
    """In a forked child: resume the run, SIGKILLing this process at the kill_at-th filesystem
    operation of checkpoint writing (kill_at < 0: never; the test kills it from outside)."""
    import lstmgen.checkpoint as ck
    import lstmgen.files.checkpoints as files
    import lstmgen.run.saving as saving

    # OpenMP's worker threads do not survive a fork: a parallel region in the child would wait
    # for them forever. One thread, as PyTorch's DataLoader workers do.
    torch.set_num_threads(1)
    calls = [0]

    def counted(function):
        def wrapper(*args, **kwargs):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return function(*args, **kwargs)

        return wrapper

    # Patched in the child only: the parent (pytest) never sees these.
    files._fsync_file = counted(files._fsync_file)
    files.os.replace = counted(os.replace)
    saving.save_weights = counted(ck.save_weights)
    saving.save_trainer_state = counted(ck.save_trainer_state)
    lstmgen.train(out=run, resume=True, quiet=True)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="SIGKILL and fork are POSIX only")
def test_sigkill_at_random_moments_never_breaks_resume(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(6_000), encoding="utf-8")
    run = tmp_path / "run"
    # Epochs of ~40 steps and short samples: a checkpoint (latest, and best when the held-out
    # loss improved; ~12 file operations each) every few hundredths of a second, so kills
    # from outside land in writes often.
    settings = dict(TINY, batch_size=8, sample_length=8)
    lstmgen.train([corpus], out=run, epochs=100_000, max_steps=1, quiet=True, **settings)
    config = json.loads((run / "config.json").read_text())
    config["train"]["max_steps"] = None
    (run / "config.json").write_text(json.dumps(config))
    # Children are forked from this process, which has torch and lstmgen loaded already: each
    # starts at once instead of paying a Python start and the imports (~1.5 s) per kill.
    fork = multiprocessing.get_context("fork")
    rng = random.Random(0)
    steps, killed_at = [checkpoint_is_consistent(run)], set()
    for attempt in range(24):
        if attempt % 2 == 0:  # inside a checkpoint write: the k-th of its file operations
            kill_at = rng.randint(1, 40)  # over 2 epochs' checkpoints: each operation of both kinds
            child = fork.Process(target=resume_and_die, args=(run, kill_at), daemon=True)
            child.start()
            child.join(timeout=60)
            killed_at.add(kill_at)
        else:  # from outside, at a random moment: loading, training, evaluating or writing
            child = fork.Process(target=resume_and_die, args=(run, -1), daemon=True)
            child.start()
            time.sleep(rng.uniform(0.02, 0.3))  # an epoch takes a few hundredths
            child.kill()
            child.join(timeout=60)
        if child.exitcode is None:  # hung: end it rather than leave it to block pytest's exit
            child.kill()
            child.join()
            pytest.fail(f"attempt {attempt}: the resumed run neither stopped nor was killed")
        # Only a kill ends a run of 100,000 epochs: any other end is a resume that failed.
        assert child.exitcode == -signal.SIGKILL, f"attempt {attempt}: exit code {child.exitcode}"
        steps.append(checkpoint_is_consistent(run))
    assert len(killed_at) >= 10  # many different file operations
    assert steps[-1] > steps[0]  # training made progress across the kills
    result = lstmgen.train(out=run, resume=True, max_steps=steps[-1] + 5, quiet=True)
    assert result.steps == steps[-1] + 5


def test_weights_get_the_same_mode_as_the_run_s_other_files(trained_run):
    def mode(path):
        return stat.S_IMODE(path.stat().st_mode)

    expected = 0o666 & ~current_umask()
    for folder in (trained_run, trained_run / "best"):
        assert mode(folder / "model.safetensors") == mode(folder / "config.json") == expected
    assert mode(trained_run) == 0o777 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
    ],
)
def test_a_full_disk_discards_the_pending_files_and_keeps_the_checkpoint(tmp_path, error):
    write_checkpoint(tmp_path, {"a": writer("old a"), "b": writer("old b")})

    def fail(path):
        path.write_text("half")
        raise error

    with pytest.raises(DiskFull, match=f"the disk is full: .* {tmp_path} .*previous one"):
        write_checkpoint(tmp_path, {"a": writer("new a"), "b": fail})
    assert [(tmp_path / n).read_text() for n in "ab"] == ["old a", "old b"]
    assert not (tmp_path / ".pending").exists()


def test_other_write_errors_pass_through_and_leave_no_pending_files(tmp_path):
    write_checkpoint(tmp_path, {"a": writer("old a")})

    def fail(path):
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        write_checkpoint(tmp_path, {"a": fail})
    assert (tmp_path / "a").read_text() == "old a" and not (tmp_path / ".pending").exists()
