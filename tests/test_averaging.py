"""Weight averaging (issue 32, item 1): the run's saved, evaluated and sampled weights are the
average of its tail's weights; the raw ones ride in trainer_state.pt; resume stays exact."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import lstmgen
from conftest import TINY, make_text
from lstmgen.checkpoint import load_trainer_state
from lstmgen.data.store import TokenStore
from lstmgen.metrics import evaluate_tokens
from lstmgen.training.averaging import WeightAverage


def test_the_average_is_the_mean_then_an_exponential_average_over_the_horizon():
    model = torch.nn.Linear(1, 1, bias=False)
    average = WeightAverage(model, start=0.5, horizon=0.2)  # of 10 steps: 2 steps
    seen = []
    for step in range(1, 11):
        with torch.no_grad():
            model.weight.fill_(float(step))
        average.update(step, step / 10)
        if step >= 5:
            seen.append(float(step))
    # steps 5 and 6: the mean (5.5); then each new step weighs 1/2: 7 -> 6.25, ...
    expected = (seen[0] + seen[1]) / 2
    for value in seen[2:]:
        expected += (value - expected) / 2
    assert average.weights() is not model
    assert float(average.weights().weight.detach()) == pytest.approx(expected)
    assert float(model.weight.detach()) == 10.0  # the raw weights are untouched


def test_the_better_of_the_average_and_the_last_weights_is_used():
    model = torch.nn.Linear(1, 1)
    average = WeightAverage(model, start=0.0, horizon=0.5)
    average.update(1, 0.5)
    first, second = average.candidates()
    assert first is average.weights() and second is model
    assert average.choose([2.0, 1.5]) == 1.5 and average.weights() is model
    assert average.choose([1.0, 1.5]) == 1.0 and average.weights() is first


def test_before_its_start_and_when_off_the_weights_are_the_models():
    model = torch.nn.Linear(1, 1)
    average = WeightAverage(model, start=0.5, horizon=0.15)
    average.update(1, 0.4)
    assert average.weights() is model and average.state() == {}
    off = WeightAverage(model, start=0.0, horizon=0.0)
    off.update(5, 0.9)
    assert off.weights() is model


@pytest.fixture(scope="module")
def averaged_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("averaged")
    corpus = root / "c.txt"
    corpus.write_text(make_text(8_000), encoding="utf-8")
    lstmgen.train([corpus], out=root / "run", epochs=2, quiet=True, **TINY)  # 2 x 112 steps
    return root / "run"


def test_the_run_saves_the_average_and_keeps_the_raw_weights_for_resume(averaged_run):
    saved = load_file(averaged_run / "model.safetensors")
    state = load_trainer_state(averaged_run / "trainer_state.pt")
    raw, averaged = state["raw_weights"], state["averaged_weights"]
    assert int(state["n_averaged"]) == 113  # steps 112-224 of 224 (from half way on)
    assert any(not torch.equal(averaged[k], raw[k]) for k in saved)
    kept = averaged if bool(state["average_chosen"]) else raw  # the better at the last evaluation
    assert all(torch.equal(saved[k], kept[k]) for k in saved)
    # what was evaluated last is what was saved: evaluating the saved weights gives the same
    last = json.loads((averaged_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["weights"] == ("average" if bool(state["average_chosen"]) else "last")
    model = lstmgen.load(averaged_run, checkpoint="latest")
    nats, count = evaluate_tokens(model.module, TokenStore.open(averaged_run / "data").val)
    assert nats / count == pytest.approx(last["val_loss"], abs=1e-4)


def test_a_stopped_and_resumed_averaged_run_ends_as_the_uninterrupted_one(averaged_run, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(8_000), encoding="utf-8")
    first = tmp_path / "first"
    lstmgen.train([corpus], out=first, epochs=2, max_steps=150, quiet=True, **TINY)
    assert "raw_weights" in load_trainer_state(first / "trainer_state.pt")  # mid-average
    lstmgen.train(out=first, resume=True, max_steps=10**6, quiet=True)
    straight, resumed = (load_file(run / "model.safetensors") for run in (averaged_run, first))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_average_0_saves_the_last_steps_weights(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(8_000), encoding="utf-8")
    lstmgen.train([corpus], out=tmp_path / "run", max_steps=30, average=0, quiet=True, **TINY)
    state = load_trainer_state(tmp_path / "run" / "trainer_state.pt")
    assert "raw_weights" not in state


def test_a_config_from_before_averaging_resumes_without_it(averaged_run, tmp_path):
    run = tmp_path / "old"
    shutil.copytree(averaged_run, run)
    config = json.loads((run / "config.json").read_text())
    del config["train"]["average"], config["train"]["average_start"]
    (run / "config.json").write_text(json.dumps(config))
    from lstmgen.config import RunConfig

    assert RunConfig.read(run).train.average == 0.0


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_a_bad_average_is_one_line(tmp_path, value):
    from lstmgen.errors import LstmgenError

    with pytest.raises(LstmgenError, match="--average"):
        lstmgen.train([tmp_path], out=tmp_path / "r", average=value, quiet=True)
