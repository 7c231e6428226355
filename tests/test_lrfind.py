"""The learning-rate range test (train --lr-finder)."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import lstmgen
from conftest import TINY, make_text
from lstmgen.config import ModelConfig
from lstmgen.model import LSTMLanguageModel
from lstmgen.training.range_test import range_test


def tokens(chars: int = 20_000) -> np.ndarray:
    text = make_text(chars)
    vocab = sorted(set(text))
    return np.array([vocab.index(c) for c in text], dtype=np.uint8), len(vocab)


def test_range_test_sweeps_rates_geometrically_and_leaves_the_model_alone():
    data, vocab = tokens()
    torch.manual_seed(0)
    model = LSTMLanguageModel(
        ModelConfig(vocab_size=vocab, hidden=32, embedding=16, layers=1, dropout=0.0)
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    test = range_test(
        model,
        data,
        batch_size=4,
        seq_len=16,
        weight_decay=0.01,
        grad_clip=1.0,
        seed=0,
        steps=60,
        low=1e-4,
        high=10.0,
    )
    assert all(
        torch.equal(before[k], v) for k, v in model.state_dict().items()
    )  # the trial ran on a copy
    assert torch.equal(rng, torch.get_rng_state())  # and drew nothing from the run's random stream
    ratios = np.diff(np.log(test.rates))
    assert test.rates[0] == 1e-4 and np.allclose(ratios, ratios[0])  # one geometric ladder
    assert test.stopped_early  # a rate of 10 blows the loss up, and the test stops there
    lowest = int(np.argmin(test.losses))
    assert test.losses[lowest] < test.losses[0] - 0.5  # the loss fell before it rose
    assert test.suggestion == test.rates[lowest] / 10
    assert 1e-4 < test.suggestion < 1.0


def test_lr_finder_run_equals_a_run_with_the_suggested_rate(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    found = lstmgen.train(
        [corpus], out=tmp_path / "found", max_steps=30, lr_finder=True, quiet=True, **TINY
    )
    config = json.loads((tmp_path / "found" / "config.json").read_text())
    suggestion = config["lr_finder"]["suggestion"]
    assert config["train"]["lr"] == suggestion and len(config["lr_finder"]["rates"]) == len(
        config["lr_finder"]["losses"]
    )
    given = lstmgen.train(
        [corpus], out=tmp_path / "given", max_steps=30, lr=suggestion, quiet=True, **TINY
    )
    assert found.steps == given.steps == 30
    a, b = (load_file(tmp_path / name / "model.safetensors") for name in ("found", "given"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the finder changed the rate and nothing else


def test_a_run_stopped_during_the_range_test_runs_it_again_on_resume(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    import lstmgen.run.session as run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "_find_lr", interrupted)
    with pytest.raises(KeyboardInterrupt):
        lstmgen.train(
            [corpus], out=tmp_path / "run", max_steps=5, lr_finder=True, quiet=True, **TINY
        )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "lr_finder" not in config and not (tmp_path / "run" / "model.safetensors").exists()
    monkeypatch.undo()
    lstmgen.train(out=tmp_path / "run", resume=True, quiet=True)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "lr_finder" in config and config["train"]["lr"] == config["lr_finder"]["suggestion"]


def test_a_range_test_without_a_finite_loss_is_a_one_line_error():
    data, vocab = tokens()
    model = LSTMLanguageModel(
        ModelConfig(vocab_size=vocab, hidden=32, embedding=16, layers=1, dropout=0.0)
    )
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))  # every loss is NaN, from the first step
    with pytest.raises(
        lstmgen.LstmgenError,
        match="no finite loss even at the lowest rate; train with --lr instead",
    ):
        range_test(
            model,
            data,
            batch_size=4,
            seq_len=16,
            weight_decay=0.01,
            grad_clip=1.0,
            seed=0,
            steps=20,
        )
