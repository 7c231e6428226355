"""Seeing training: ~20 evaluation points per run, curves.png, `lstmgen plot`, --tensorboard."""

import json

import numpy as np
import pytest
import torch

import lstmgen
import lstmgen.training.trainer as trainer_module
from conftest import TINY, make_text
from lstmgen.config import ModelConfig
from lstmgen.metrics import evaluate_tokens
from lstmgen.model import LSTMLanguageModel
from test_cli import run_cli
from test_train import tick_the_trainer_clock

PNG = b"\x89PNG\r\n\x1a\n"


def rows_of(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_limited_evaluation_scores_a_sample_spread_over_the_text():
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab_size=12, hidden=16, embedding=8)).eval()
    tokens = np.random.default_rng(1).integers(1, 12, size=3000)
    whole = evaluate_tokens(model, tokens, streams=8, warmup=64)
    assert evaluate_tokens(model, tokens, streams=8, warmup=64, limit=5000) == whole
    nats, count = evaluate_tokens(model, tokens, streams=8, warmup=64, limit=800)
    assert count == 800 and nats != whole[0]
    # the sample is the first 100 predictions of each eighth of the text, each with its context
    stride, reference = 375, 0.0
    for i in range(8):
        part = tokens[max(0, i * stride - 64) : i * stride + 101]
        scored = min(i * stride, 64)
        with torch.no_grad():
            logits, _, _ = model(torch.from_numpy(part)[None])
        nll = torch.nn.functional.cross_entropy(
            logits[0, :-1], torch.from_numpy(part[1:]), reduction="none"
        )
        reference += float(nll[scored : scored + 100].sum())
    assert nats == pytest.approx(reference, rel=1e-4)


def test_a_timed_run_draws_twenty_points_on_a_sample_and_judges_on_the_whole(tmp_path, monkeypatch):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(60_000), encoding="utf-8")
    tick_the_trainer_clock(monkeypatch, 0.05)  # the same schedule on any machine
    monkeypatch.setattr(trainer_module, "MIN_CURVE_TOKENS", 512)  # the whole is ~6,000 tokens
    run = tmp_path / "run"
    result = lstmgen.train([corpus], out=run, max_time="6s", quiet=True, **TINY)
    rows = rows_of(run)
    samples = [r for r in rows if r.get("val_sample")]
    whole = [r for r in rows if not r.get("val_sample")]
    assert len(samples) == 19 and len(whole) == 1  # less than an epoch: the end alone is whole
    assert {r["val_tokens"] for r in samples} == {samples[0]["val_tokens"]}
    assert samples[0]["val_tokens"] < whole[0]["val_tokens"]
    fractions = [r["elapsed_s"] / 6 for r in samples]
    assert fractions == pytest.approx([k / 20 for k in range(1, 20)], abs=0.03)
    # the final and best figures are the whole evaluation's, not a sample's
    assert result.last_val_bits_per_char == pytest.approx(whole[-1]["val_bpc"], abs=1e-4)
    assert result.best_val_bits_per_char == result.last_val_bits_per_char
    assert lstmgen.info(run)["last_val_bits_per_char"] == pytest.approx(
        whole[-1]["val_bpc"], abs=1e-4
    )
    assert (run / "curves.png").read_bytes().startswith(PNG)


def test_a_run_keeps_curves_png(trained_run):
    assert (trained_run / "curves.png").read_bytes().startswith(PNG)


def test_plot_compares_runs(trained_run, tmp_path, capsys):
    out = tmp_path / "both.png"
    code, printed, _ = run_cli(["plot", trained_run, trained_run, "--out", out], capsys)
    assert code == 0 and out.read_bytes().startswith(PNG) and printed.strip() == str(out)


@pytest.mark.parametrize(
    "case, message",
    [
        ("not a run", "is not a run directory (no config.json)"),
        ("no evaluations", "has no evaluations yet; train it further"),
        ("not png", "plots are PNG files; give a name ending in .png"),
        ("a folder", "is a folder; give a file name ending in .png"),
    ],
)
def test_plot_refuses_bad_input_in_one_line(trained_run, tmp_path, capsys, case, message):
    run, out = trained_run, tmp_path / "x.png"
    if case == "not a run":
        run = tmp_path
    elif case == "no evaluations":
        run = tmp_path / "copy"
        run.mkdir()
        (run / "config.json").write_text((trained_run / "config.json").read_text())
    elif case == "not png":
        out = tmp_path / "x.jpg"
    else:
        out.mkdir()
    code, _, err = run_cli(["plot", run, "--out", out], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_tensorboard_gets_each_evaluation(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is in the test extra; not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(20_000), encoding="utf-8")
    run = tmp_path / "run"
    lstmgen.train([corpus], out=run, max_steps=40, tensorboard=True, quiet=True, **TINY)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("bits_per_char/val_bpc")]
    expected = [(r["step"], r["val_bpc"]) for r in rows_of(run)]
    assert len(logged) == len(expected) == 20
    assert [s for s, _ in logged] == [s for s, _ in expected]
    assert [v for _, v in logged] == pytest.approx([v for _, v in expected], abs=1e-5)


def test_an_evaluation_hook_stops_the_run(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(20_000), encoding="utf-8")
    seen = []

    def hook(row):
        seen.append(row["step"])
        return len(seen) == 3  # any true value stops; a text would say why

    result = lstmgen.train(
        [corpus], out=tmp_path / "run", max_steps=100, on_evaluation=hook, quiet=True, **TINY
    )
    assert result.stopped_because == "stopped by a hook" and result.steps == seen[2] == 15
    assert lstmgen.info(tmp_path / "run")["steps"] == 15  # checkpointed where it stopped
