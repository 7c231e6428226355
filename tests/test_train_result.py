"""TrainResult: the final model's held-out figure (at its last step) beside the best one."""

import json
import os
import shutil
import signal

import pytest

import lstmgen
from conftest import TINY, make_text
from lstmgen.errors import TrainingInterrupted


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_last_is_the_held_out_figure_at_the_last_step_and_best_the_lowest(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(8_000), encoding="utf-8")
    result = lstmgen.train([corpus], out=tmp_path / "run", epochs=2, quiet=True, **TINY)
    rows = metrics(tmp_path / "run")
    assert rows[-1]["step"] == result.steps
    assert round(result.last_val_bits_per_char, 5) == rows[-1]["val_bpc"]
    assert round(result.best_val_bits_per_char, 5) == min(row["val_bpc"] for row in rows)
    assert type(result.last_val_bits_per_char) is float


def test_last_is_none_when_the_last_step_was_not_evaluated(trained_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    evaluated = metrics(run)[-1]["step"]

    def interrupt(self, trainer, loss, lr):  # Ctrl-C a few steps into the resumed run
        if trainer.progress.step == evaluated + 3:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr("lstmgen.training.report.RunReporter.on_step", interrupt)
    with pytest.raises(TrainingInterrupted) as stopped:
        lstmgen.train(out=run, resume=True, epochs=4, quiet=True)
    result = stopped.value.result
    assert result.steps == evaluated + 3 and result.best_val_bits_per_char is not None
    assert result.last_val_bits_per_char is None  # its figure would be from step `evaluated`
