import json
import math

import numpy as np
import pytest
import torch

import lstmgen
from lstmgen.config import ModelConfig, SampleConfig
from lstmgen.errors import LstmgenError
from lstmgen.inference import Model
from lstmgen.model import LSTMLanguageModel
from lstmgen.sampling.sampler import StopMatcher, TokenSampler, adjust_logits, choose, sample_text
from lstmgen.sampling.stepper import NumpyLSTMStepper, TorchStepper, make_stepper
from lstmgen.tokens import WordCounter, WordTokenizer


def test_greedy_is_deterministic_and_equals_top_k_1(trained_run):
    model = lstmgen.load(trained_run)
    greedy = model.generate("The ", length=60, temperature=0)
    assert greedy == model.generate("The ", length=60, temperature=0, seed=5)
    assert greedy == model.generate("The ", length=60, temperature=1.0, top_k=1, seed=9)
    assert len(greedy) == 60


def test_a_vanishing_temperature_is_greedy_not_nan(trained_run):
    model = lstmgen.load(trained_run)
    with np.errstate(all="raise"):  # no overflow into inf and NaN weights
        tiny = model.generate("The ", length=60, temperature=1e-144, seed=2)
    assert tiny == model.generate("The ", length=60, temperature=0)
    with np.errstate(all="raise"):  # a huge one: as good as uniform, never a banned token
        huge = model.generate("The ", length=60, temperature=1e300, seed=2)
    assert len(huge) == 60 and "\ufffd" not in huge


def test_same_seed_same_text_and_batch(trained_run):
    model = lstmgen.load(trained_run)
    a = model.generate("The cat", length=80, temperature=1.0, seed=3)
    assert a == model.generate("The cat", length=80, temperature=1.0, seed=3)
    assert a != model.generate("The cat", length=80, temperature=1.0, seed=4)
    batch = model.generate("The cat", length=80, temperature=1.0, seed=3, num_samples=5)
    assert isinstance(batch, list) and len(batch) == 5 and len(set(batch)) > 1
    assert batch[0] == a  # sample i has its own random stream: the same text alone or in a batch


def test_stream_yields_the_same_text(trained_run):
    model = lstmgen.load(trained_run)
    pieces = list(model.stream("A ", length=50, temperature=0.8, seed=11))
    assert "".join(pieces) == model.generate("A ", length=50, temperature=0.8, seed=11)


def test_unseen_prime_characters_warn_but_work(trained_run, capsys):
    model = lstmgen.load(trained_run)
    text = model.generate("Zebra ☃ " * 300, length=20, seed=1)  # also longer than one priming chunk
    assert len(text) == 20 and "\ufffd" not in text  # the unknown character is never generated
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "unknown character" in err


def test_stop_strings_cut_the_text_and_are_not_printed(trained_run):
    model = lstmgen.load(trained_run)
    full = model.generate("The ", length=300, temperature=0)
    stop = full[40:43]
    first = full.find(stop)
    assert model.generate("The ", length=300, temperature=0, stop=[stop]) == full[:first]
    later = full.find(stop, first + 1)
    expected = full[:later] if later >= 0 else full
    assert (
        model.generate("The ", length=300, temperature=0, stop=[stop], min_length=first + 1)
        == expected
    )
    events = list(model.stream_samples("The ", length=300, temperature=0, stop=[stop, "zzzz"]))
    assert events[-1].end == "stop" and "".join(e.text for e in events) == full[:first]


def test_stop_matcher_holds_back_a_possible_stop():
    matcher = StopMatcher(["STOP"])
    shown = []
    for ch in "abSTxSTOPcd":
        shown.append(matcher.feed(ch))
        if shown[-1][1]:
            break
    assert "".join(text for text, _ in shown) == "abSTx" and len(shown) == 9  # stopped at the P
    assert shown[3] == ("", False)  # "ST" might begin "STOP": held back
    matcher = StopMatcher(["\n\n"])
    assert matcher.feed("a\n") == ("a", False) and matcher.feed("b") == ("\nb", False)


def test_top_p_keeps_only_the_nucleus():
    logits = np.log(
        np.array([[1e-9, 0.5, 0.3, 0.15, 0.05]], np.float32)
    )  # id 0 is the unknown token
    kept = np.isfinite(adjust_logits(logits, SampleConfig(temperature=1.0, top_p=0.75)))
    assert kept.tolist() == [[False, True, True, False, False]]  # 0.5 + 0.3 covers 0.75
    kept = np.isfinite(adjust_logits(logits, SampleConfig(temperature=1.0, top_p=0.1)))
    assert kept.tolist() == [[False, True, False, False, False]]  # the top token always stays


def test_top_k_keeps_k():
    logits = np.array([[9.0, 1.0, 4.0, 3.0, 2.0]], np.float32)
    kept = np.isfinite(adjust_logits(logits, SampleConfig(top_k=2)))
    assert kept.tolist() == [[False, False, True, True, False]]


def test_repetition_penalty_scales_seen_tokens():
    logits = np.array([[0.0, 2.0, -1.0, 3.0]], np.float32)
    recent = np.array([[0, 1, 1, 0]])
    out = adjust_logits(logits, SampleConfig(temperature=1.0, repetition_penalty=2.0), recent)
    assert out.tolist() == [[-np.inf, 1.0, -2.0, 3.0]]


def test_repetition_counts_cover_the_last_window(trained_run):
    model = lstmgen.load(trained_run)
    config = SampleConfig(
        length=40,
        temperature=1.0,
        repetition_penalty=1.5,
        repetition_window=7,
        seed=2,
        num_samples=2,
    )
    prime = torch.from_numpy(model.encode("The cat"))
    sampler = TokenSampler(model.module, prime, config)
    made = [sampler.next() for _ in range(20)]
    last = np.stack(made[-7:], axis=1)  # (2, 7): the window is all generated by now
    for row in range(2):
        assert (
            sampler.recent[row].tolist()
            == np.bincount(last[row], minlength=sampler.recent.shape[1]).tolist()
        )
    plain = model.generate("The ", length=200, temperature=0)
    penalised = model.generate(
        "The ", length=200, temperature=0, repetition_penalty=3.0, repetition_window=8
    )
    assert plain != penalised


def test_choose_draws_by_probability():
    logits = np.log(np.array([[1e-9, 0.2, 0.8]] * 2000, np.float32))
    ids = choose(
        adjust_logits(logits, SampleConfig(temperature=1.0)),
        SampleConfig(temperature=1.0),
        np.random.default_rng(0).random(2000),
    )
    assert 0 not in ids and abs((ids == 2).mean() - 0.8) < 0.03
    assert choose(logits, SampleConfig(temperature=0), np.zeros(2000)).tolist() == [2] * 2000


@pytest.mark.parametrize("layers,batch,tied", [(1, 1, False), (3, 4, False), (2, 4, True)])
def test_fast_path_matches_the_nn_lstm_forward(layers, batch, tied):
    torch.manual_seed(0)
    embedding = 24 if tied else 8
    model = LSTMLanguageModel(
        ModelConfig(vocab_size=30, embedding=embedding, hidden=24, layers=layers, tie_weights=tied)
    ).eval()
    ids = torch.randint(0, 30, (batch, 40))
    with torch.no_grad():
        reference, _, _ = model(ids)
        _, _, state = model(ids[:, :1])
    stepper = make_stepper(model, state)
    assert isinstance(stepper, NumpyLSTMStepper)
    for t in range(1, 40):
        logits = stepper.step(ids[:, t].numpy())
        probs = torch.softmax(torch.from_numpy(logits.copy()), -1)
        assert torch.allclose(probs, torch.softmax(reference[:, t], -1), atol=1e-5)
    if batch > 1:  # dropping streams keeps the others exactly where they were
        stepper.keep(np.array([2, 0]))
        logits = stepper.step(np.array([5, 6]))
        with torch.no_grad():
            expected, _, _ = model(torch.cat([ids[[2, 0]], torch.tensor([[5], [6]])], 1))
        assert np.allclose(logits, expected[:, -1].numpy(), atol=1e-5)


def test_gru_models_sample_through_the_torch_path():
    torch.manual_seed(0)
    model = LSTMLanguageModel(
        ModelConfig(vocab_size=12, embedding=8, hidden=16, layers=2, cell="gru")
    ).eval()
    with torch.no_grad():
        _, _, state = model(torch.tensor([[1, 2]]))
    assert isinstance(make_stepper(model, state), TorchStepper)
    config = SampleConfig(length=30, seed=1, num_samples=3, stop=["a"])
    events = list(sample_text(model, lambda i: "abcdefghijkl"[i], torch.tensor([1, 2]), config))
    assert sorted(e.sample for e in events if e.end) == [0, 1, 2]
    assert events == list(
        sample_text(model, lambda i: "abcdefghijkl"[i], torch.tensor([1, 2]), config)
    )


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"temperature": -1}, "--temperature"),
        ({"top_p": 0}, "--top-p"),
        ({"top_p": 1.5}, "--top-p"),
        ({"length": -1}, "--length"),
        ({"top_k": 0}, "--top-k"),
        ({"repetition_penalty": 0}, "--repetition-penalty"),
        ({"stop": [""]}, "--stop"),
        ({"min_length": 10, "length": 5}, "--min-length"),
        ({"seed": -2}, "--seed"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(LstmgenError, match=message):
        SampleConfig(**kwargs)


EVALUATION_TEXT = "The cat sat on a mat.\nThe dog ran to the big red house.\n"  # 56 characters


def predict_uniformly(module: LSTMLanguageModel) -> None:
    """All output logits equal: every token of the vocabulary gets probability 1/V."""
    with torch.no_grad():
        module.head.weight.zero_()
        module.head.bias.zero_()


def test_evaluate_reports_bits_per_char(trained_run):
    model = lstmgen.load(trained_run)
    trained = model.evaluate(EVALUATION_TEXT)
    assert (
        trained["characters"] == 56
        and trained["tokens"] == 56
        and trained["unknown_characters"] == 0
    )
    vocab = model.tokenizer.vocab_size
    predict_uniformly(model.module)
    uniform = model.evaluate(EVALUATION_TEXT)
    # Each token costs exactly ln V nats; at the char level a token is a character.
    assert uniform["nats_per_token"] == pytest.approx(math.log(vocab), rel=1e-6)
    assert uniform["nats_per_char"] == pytest.approx(math.log(vocab), rel=1e-6)
    assert uniform["bits_per_char"] == pytest.approx(math.log2(vocab), rel=1e-6)
    assert uniform["perplexity"] == pytest.approx(vocab, rel=1e-6)
    assert (
        trained["bits_per_char"] < uniform["bits_per_char"] - 1
    )  # trained: far better than a guess


def test_bits_per_char_spreads_each_token_s_bits_over_the_characters():
    counter = WordCounter()
    counter.update(EVALUATION_TEXT)
    # 15 tokens (words with their space, "." and "\n"), the lone space and the unknown: 17
    tokenizer = WordTokenizer.fit(counter)
    module = LSTMLanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, hidden=16, embedding=8))
    predict_uniformly(module)
    result = Model(module, tokenizer).evaluate(EVALUATION_TEXT)
    assert tokenizer.vocab_size == 17 and (result["tokens"], result["characters"]) == (18, 56)
    assert result["nats_per_token"] == pytest.approx(math.log(17), rel=1e-6)
    assert result["perplexity"] == pytest.approx(17, rel=1e-6)  # per token
    assert result["bits_per_char"] == pytest.approx(
        math.log2(17) * 18 / 56, rel=1e-6
    )  # log2(17) bits × 18 tokens / 56 chars
    assert result["nats_per_char"] == pytest.approx(math.log(17) * 18 / 56, rel=1e-6)


def test_evaluate_returns_plain_python_numbers(trained_run):
    result = lstmgen.load(trained_run).evaluate(EVALUATION_TEXT)
    assert {k: type(v) for k, v in result.items()} == {
        k: (str if k == "level" else int if k in INTEGERS else float) for k in result
    }
    assert json.loads(json.dumps(result)) == result


INTEGERS = {"characters", "tokens", "unknown_tokens", "unknown_characters"}


def test_stream_samples_counts_each_sample_s_tokens_not_its_characters():
    counter = WordCounter()
    counter.update(EVALUATION_TEXT)
    tokenizer = WordTokenizer.fit(counter)
    module = LSTMLanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size, hidden=16, embedding=8))
    events = Model(module, tokenizer).stream_samples("The", length=12, seed=1, num_samples=3)
    texts = ["", "", ""]
    for event in events:
        texts[event.sample] += event.text
    assert events.tokens == [12, 12, 12]  # a word is one token and several characters
    assert all(len(text) > 12 for text in texts)
