"""Sizing the model to --max-time (sizing.py)."""

import json

import pytest
import torch

import lstmgen
from lstmgen import sizing
from lstmgen.model import ModelConfig

from conftest import make_text


def fake_speed(flops_per_s):
    """A machine whose training speed is inversely proportional to the parameter count."""
    def measure(config, batch_size, seq_len, device, **_):
        from lstmgen.model import LSTMLanguageModel

        parameters = LSTMLanguageModel(config).num_parameters()
        return flops_per_s / (6 * parameters), parameters
    return measure


@pytest.mark.parametrize("budget_s", [10, 60, 600, 6000])
def test_the_largest_size_that_reads_enough_tokens_per_parameter(monkeypatch, budget_s):
    monkeypatch.setattr(sizing, "measure_speed", fake_speed(4e10))
    config = ModelConfig(vocab_size=65)
    chosen = sizing.size_for_budget(config, budget_s=budget_s, train_tokens=10**9, batch_size=16, seq_len=32, device=torch.device("cpu"))
    from lstmgen.model import LSTMLanguageModel

    def tokens_per_parameter(hidden):
        params = LSTMLanguageModel(ModelConfig(vocab_size=65, hidden=hidden)).num_parameters()
        return 4e10 / (6 * params) * budget_s * sizing.TRAINING_SHARE / params

    fitting = [h for h in sizing.LADDER if tokens_per_parameter(h) >= sizing.TOKENS_PER_PARAMETER]
    assert chosen.hidden == (max(fitting) if fitting else sizing.LADDER[0])
    assert chosen.limited_by == ("time" if fitting and max(fitting) < sizing.LADDER[-1] else "smallest" if not fitting else "ladder")


def test_a_longer_budget_never_picks_a_smaller_model(monkeypatch):
    monkeypatch.setattr(sizing, "measure_speed", fake_speed(4e10))
    sizes = [sizing.size_for_budget(ModelConfig(vocab_size=65), budget_s=b, train_tokens=10**9, batch_size=16, seq_len=32,
                                    device=torch.device("cpu")).hidden for b in (30, 60, 120, 300, 600, 1200)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_a_small_corpus_caps_the_size(monkeypatch):
    monkeypatch.setattr(sizing, "measure_speed", fake_speed(1e15))  # time is no limit on this machine
    chosen = sizing.size_for_budget(ModelConfig(vocab_size=65), budget_s=600, train_tokens=300_000, batch_size=16, seq_len=32, device=torch.device("cpu"))
    assert chosen.limited_by == "data" and chosen.parameters <= sizing.PARAMETERS_PER_TOKEN * 300_000
    bigger = next(h for h in sizing.LADDER if h > chosen.hidden)
    from lstmgen.model import LSTMLanguageModel

    assert LSTMLanguageModel(ModelConfig(vocab_size=65, hidden=bigger)).num_parameters() > sizing.PARAMETERS_PER_TOKEN * 300_000


def test_max_time_without_hidden_sizes_the_model_and_records_why(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    rng = torch.get_rng_state()
    lstmgen.train([corpus], out=tmp_path / "auto", max_time="2s", batch_size=4, seq_len=16, quiet=True)
    config = json.loads((tmp_path / "auto" / "config.json").read_text())
    assert config["model"]["hidden"] == config["sizing"]["hidden"] in sizing.LADDER
    assert config["sizing"]["tokens_per_s"] > 0 and config["sizing"]["limited_by"] in ("time", "data", "ladder", "smallest")
    lstmgen.train([corpus], out=tmp_path / "fixed", max_time="1s", hidden=48, embedding=16, layers=1, batch_size=4, seq_len=16, quiet=True)
    config = json.loads((tmp_path / "fixed" / "config.json").read_text())
    assert config["model"]["hidden"] == 48 and "sizing" not in config  # --hidden given: no sizing
    lstmgen.train([corpus], out=tmp_path / "epochs", epochs=1, batch_size=4, seq_len=16, quiet=True)
    assert "sizing" not in json.loads((tmp_path / "epochs" / "config.json").read_text())  # no budget: the default size


def test_word_level_runs_are_not_sized(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    lstmgen.train([corpus], out=tmp_path / "word", level="word", max_time="1s", batch_size=4, seq_len=16, quiet=True)
    config = json.loads((tmp_path / "word" / "config.json").read_text())
    assert "sizing" not in config and config["model"]["hidden"] == 256
