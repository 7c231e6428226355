"""Thread counts: asked for (--threads, LSTMGEN_THREADS) or chosen by timing real steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from lstmgen import threads
from lstmgen.errors import LstmgenError


class FakeMachine:
    """A clock and a `use` that make a step take `seconds[threads]`."""

    def __init__(self, monkeypatch, seconds: dict[int, float]):
        self.seconds, self.now, self.using, self.history = seconds, 0.0, None, []
        monkeypatch.setattr(threads, "cores", lambda: 2)
        monkeypatch.setattr(threads, "use", self.use)
        monkeypatch.setattr(threads.time, "perf_counter", lambda: self.now)
        monkeypatch.delenv(threads.ENV, raising=False)
        monkeypatch.setattr(threads, "_asked", None)

    def use(self, n: int) -> None:
        self.using = n

    def run(self, chooser: threads.ThreadChooser, steps: int) -> None:
        for _ in range(steps):
            chooser.step_starts(self.now)
            self.now += self.seconds[self.using]
            self.history.append(self.using)
            chooser.step_ends(self.now)


@pytest.mark.parametrize(("seconds", "best"), [({1: 1.0, 2: 3.0}, 1), ({1: 1.0, 2: 0.8}, 2)])
def test_the_faster_count_is_kept_after_trying_both_in_turns(monkeypatch, seconds, best):
    machine = FakeMachine(monkeypatch, seconds)
    chooser = threads.ThreadChooser(recheck_s=1000.0, trial_steps=4)
    machine.run(chooser, 20)
    assert machine.history[:8] == [1, 2] * 4  # the first look: in turns
    assert set(machine.history[8:]) == {best} and chooser.chosen == best


def test_a_change_of_load_is_seen_at_the_next_look(monkeypatch):
    machine = FakeMachine(monkeypatch, {1: 1.0, 2: 0.5})  # idle: two threads are faster
    chooser = threads.ThreadChooser(recheck_s=20.0, trial_steps=4)
    machine.run(chooser, 10)
    assert chooser.chosen == 2
    machine.seconds = {1: 1.0, 2: 3.0}  # another process now spins on the second core
    machine.run(chooser, 30)  # one more look (t = 28 to 44 s), then one thread only
    assert chooser.chosen == 1 and machine.history[-5:] == [1] * 5


def test_a_count_asked_for_is_used_and_never_timed(monkeypatch):
    machine = FakeMachine(monkeypatch, {1: 1.0, 2: 0.1})
    monkeypatch.setenv(threads.ENV, "1")
    chooser = threads.ThreadChooser(trial_steps=4)
    machine.run(chooser, 12)
    assert set(machine.history) == {1}


def test_bad_thread_counts_are_one_line_errors(monkeypatch):
    monkeypatch.setattr(threads, "_asked", None)
    monkeypatch.setenv(threads.ENV, "many")
    with pytest.raises(LstmgenError, match="LSTMGEN_THREADS='many' must be a number"):
        threads.requested()
    with pytest.raises(LstmgenError, match="--threads 0 must be at least 1"):
        threads.requested(0)


def test_bad_thread_counts_on_the_command_line_exit_2_with_one_line(monkeypatch, capsys):
    from test_cli import run_cli

    run = Path(__file__).parent / "golden" / "run-char"
    monkeypatch.setattr(threads, "_asked", None)
    code, out, err = run_cli(["generate", run, "--threads", "0", "--length", "5"], capsys)
    assert (code, out, err.strip()) == (2, "", "lstmgen: error: --threads 0 must be at least 1")
    monkeypatch.setenv(threads.ENV, "many")
    code, out, err = run_cli(["generate", run, "--length", "5"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "LSTMGEN_THREADS='many' must be a number of threads or auto" in err
