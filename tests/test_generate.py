import pytest
import torch

import lstmgen
from lstmgen.errors import LstmgenError
from lstmgen.generate import SampleConfig, filter_logits


def test_greedy_is_deterministic_and_equals_top_k_1(trained_run):
    model = lstmgen.load(trained_run)
    greedy = model.generate("The ", length=60, temperature=0)
    assert greedy == model.generate("The ", length=60, temperature=0, seed=5)
    assert greedy == model.generate("The ", length=60, temperature=1.0, top_k=1, seed=9)
    assert len(greedy) == 60


def test_same_seed_same_text_and_batch(trained_run):
    model = lstmgen.load(trained_run)
    a = model.generate("The cat", length=80, temperature=1.0, seed=3)
    assert a == model.generate("The cat", length=80, temperature=1.0, seed=3)
    assert a != model.generate("The cat", length=80, temperature=1.0, seed=4)
    batch = model.generate("The cat", length=40, temperature=1.0, seed=3, num_samples=5)
    assert isinstance(batch, list) and len(batch) == 5 and len(set(batch)) > 1


def test_stream_yields_the_same_text(trained_run):
    model = lstmgen.load(trained_run)
    pieces = list(model.stream("A ", length=50, temperature=0.8, seed=11))
    assert "".join(pieces) == model.generate("A ", length=50, temperature=0.8, seed=11)


def test_unseen_prime_characters_warn_but_work(trained_run, capsys):
    model = lstmgen.load(trained_run)
    text = model.generate("Zebra ☃ ", length=20, seed=1)
    assert len(text) == 20 and "\ufffd" not in text  # the unknown character is never generated
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "unknown character" in err


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([[0.0, 0.5, 0.3, 0.15, 0.05]]))  # id 0 is the unknown token
    kept = filter_logits(logits, SampleConfig(temperature=1.0, top_p=0.75)).isfinite()
    assert kept.tolist() == [[False, True, True, False, False]]  # 0.5 + 0.3 covers 0.75
    kept = filter_logits(logits, SampleConfig(temperature=1.0, top_p=0.1)).isfinite()
    assert kept.tolist() == [[False, True, False, False, False]]  # the top token always stays


def test_top_k_keeps_k():
    logits = torch.tensor([[9.0, 1.0, 4.0, 3.0, 2.0]])
    kept = filter_logits(logits, SampleConfig(top_k=2)).isfinite()
    assert kept.tolist() == [[False, False, True, True, False]]


@pytest.mark.parametrize(
    "kwargs,message",
    [({"temperature": -1}, "--temperature"), ({"top_p": 0}, "--top-p"), ({"top_p": 1.5}, "--top-p"), ({"length": -1}, "--length"), ({"top_k": 0}, "--top-k")],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(LstmgenError, match=message):
        SampleConfig(**kwargs)


def test_evaluate_reports_bits_per_char(trained_run):
    model = lstmgen.load(trained_run)
    result = model.evaluate("The cat sat on a mat.\nThe dog ran to the big red house.\n")
    assert result["bits_per_char"] == pytest.approx(result["nats_per_char"] / 0.6931471805599453)
    assert result["perplexity"] == pytest.approx(2 ** result["bits_per_char"])
    assert result["characters"] == 55 and result["unknown_characters"] == 0
