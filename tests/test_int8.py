"""int8 inference (issue 30): --precision auto|fp32|bf16|int8 on generate, evaluate, classify,
serve and lstmgen.load; auto's held-out check, its record, and its fall-backs."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

import lstmgen  # noqa: E402
import lstmgen.int8 as int8_module  # noqa: E402
import lstmgen.precision as precision_module  # noqa: E402
from conftest import make_text  # noqa: E402
from lstmgen.cli import main  # noqa: E402
from lstmgen.int8 import Int8Module, Int8Stepper  # noqa: E402
from lstmgen.precision import INT8_TOLERANCE, RECORD  # noqa: E402
from test_golden import EXPECTED, _generate  # noqa: E402
from test_serve import batch_texts, seeded_settings  # noqa: E402


@pytest.fixture
def int8_cpu(monkeypatch):
    """A CPU with int8 dot products, and auto allowed to choose int8 (the suite keeps fp32)."""
    monkeypatch.delenv("LSTMGEN_CPU_INT8", raising=False)
    monkeypatch.setattr(int8_module, "cpu_flags", lambda: {"sse2", "avx512_vnni"})
    monkeypatch.setattr(precision_module, "INT8_MIN_HIDDEN", 0)  # the tests' models are tiny


@pytest.fixture
def own_run(trained_run, tmp_path):
    """A copy of the trained run: auto writes its check into the run."""
    shutil.copytree(trained_run, tmp_path / "run")
    return tmp_path / "run"


def test_int8_held_out_loss_is_within_the_tolerance_of_fp32(trained_run):
    text = make_text(3000, seed=9)
    fp32 = lstmgen.load(trained_run, precision="fp32").evaluate(text)["bits_per_char"]
    int8 = lstmgen.load(trained_run, precision="int8")
    assert int8.precision == "int8" and isinstance(int8.module, Int8Module)
    assert abs(int8.evaluate(text)["bits_per_char"] - fp32) < INT8_TOLERANCE


def test_precision_fp32_is_todays_text_whatever_the_cpu(capsys, int8_cpu):
    first = _generate(
        capsys, "--seed", "3", "--length", "120", "--prime", "The ", "--precision", "fp32"
    )
    assert first == EXPECTED["generated"]


def test_auto_chooses_int8_where_the_cpu_has_it_and_keeps_the_check(own_run, int8_cpu, capsys):
    model = lstmgen.load(own_run, verbose=True)
    assert model.precision == "int8"
    assert "precision: int8 (auto: this CPU's int8 dot products" in capsys.readouterr().err
    record = json.loads((own_run / RECORD).read_text())["best"]
    assert abs(record["difference"]) < INT8_TOLERANCE and record["tokens"] > 0
    assert lstmgen.info(own_run)["int8"]["best"]["int8_bits_per_char"] == pytest.approx(
        record["int8_bits_per_char"]
    )
    # the same seed and settings give the same text within one precision
    settings = {"length": 80, "seed": 4, "num_samples": 3}
    assert model.generate("The", **settings) == lstmgen.load(own_run).generate("The", **settings)
    # new weights: measured again, not taken from the record
    weights = own_run / "best" / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    (own_run / RECORD).write_text(json.dumps({"best": {**record, "difference": 1.0}}))
    assert lstmgen.load(own_run).precision == "int8"
    assert json.loads((own_run / RECORD).read_text())["best"]["difference"] < INT8_TOLERANCE


def test_auto_keeps_fp32_where_int8_loses_too_much(own_run, int8_cpu, monkeypatch):
    lstmgen.load(own_run)  # the check, kept
    record = json.loads((own_run / RECORD).read_text())
    record["best"]["difference"] = 0.02
    (own_run / RECORD).write_text(json.dumps(record))
    model = lstmgen.load(own_run)
    assert model.precision == "fp32" and "lose" in model.precision_reason


def test_auto_falls_back_to_fp32_where_the_cpu_lacks_int8_dot_products(own_run, monkeypatch):
    monkeypatch.delenv("LSTMGEN_CPU_INT8", raising=False)
    monkeypatch.setattr(int8_module, "cpu_flags", lambda: {"sse2", "avx2", "avx512f"})
    model = lstmgen.load(own_run)
    assert model.precision == "fp32" and not isinstance(model.module, Int8Module)
    assert "no int8 dot-product instructions" in model.precision_reason
    assert not (own_run / RECORD).exists()  # nothing measured


def test_auto_keeps_fp32_for_a_model_too_small_to_gain(own_run, int8_cpu, monkeypatch):
    monkeypatch.setattr(precision_module, "INT8_MIN_HIDDEN", 128)  # TINY's hidden is 32
    model = lstmgen.load(own_run)
    assert model.precision == "fp32" and "hidden 32" in model.precision_reason
    assert lstmgen.load(own_run, precision="int8").precision == "int8"  # asked for: int8


def test_auto_falls_back_to_fp32_without_onnxruntime(own_run, int8_cpu, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # import fails
    model = lstmgen.load(own_run)
    assert model.precision == "fp32" and "onnxruntime" in model.precision_reason


def test_int8_rows_are_their_own_at_every_batch_size(trained_run):
    module = lstmgen.load(trained_run, precision="int8").module
    c = module.config
    generator = torch.Generator().manual_seed(0)
    h = torch.tanh(torch.randn(c.layers, 64, c.hidden, generator=generator))
    state = (h, torch.randn(c.layers, 64, c.hidden, generator=generator))
    ids = np.arange(64) % c.vocab_size
    full = Int8Stepper(module, state).step(ids)
    for size in (1, 2, 7):
        part = Int8Stepper(module, tuple(s[:, :size] for s in state)).step(ids[:size])
        assert np.array_equal(part, full[:size]), size
    joined = Int8Stepper(module, tuple(s[:, :5] for s in state))
    joined.join(tuple(s[:, 5:] for s in state))
    assert np.array_equal(joined.step(ids), full)
    joined.keep(np.array([3, 9]))  # the next step of two rows is theirs in the whole batch
    whole = Int8Stepper(module, state)
    whole.step(ids)
    assert np.array_equal(joined.step(ids[[3, 9]]), whole.step(ids)[[3, 9]])


def test_int8_requests_give_the_same_text_alone_and_in_a_batch_of_64(trained_run):
    model = lstmgen.load(trained_run, precision="int8")
    requests = seeded_settings(64)
    alone = batch_texts(model, requests, 1)
    for (prompt, config), text in list(zip(requests, alone, strict=True))[:8]:
        assert text == model.generate(prompt, config)  # the server's text is generate's
    assert batch_texts(model, requests, 64) == alone
    assert len(set(alone)) > 40


def test_jsonl_says_the_precision_and_a_bad_one_is_a_one_line_error(trained_run, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", str(trained_run), "--length", "5", "--format", "jsonl"])
    assert exit_.value.code == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "fp32"
    with pytest.raises(SystemExit) as exit_:
        main(["generate", str(trained_run), "--precision", "int4"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.strip().splitlines() == [
        "lstmgen: error: --precision 'int4' is not a precision; use auto, fp32, bf16 or int8"
    ]


def test_a_conditioned_run_classifies_and_evaluates_alike_in_int8(tmp_path, int8_cpu, monkeypatch):
    rows = ["label,text"] + [
        f"{'ab'[i % 2]},{make_text(120, seed=i).replace(chr(10), ' ')}" for i in range(60)
    ]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    lstmgen.train(
        [tmp_path / "t.csv"], out=tmp_path / "run", column="text", condition_column="label",
        max_steps=60, quiet=True, hidden=32, embedding=16, layers=2, batch_size=4, seq_len=16,
    )  # fmt: skip
    auto = lstmgen.load(tmp_path / "run")  # the check runs each document under its conditions
    assert auto.precision == "int8"
    fp32 = lstmgen.load(tmp_path / "run", precision="fp32")
    texts = [make_text(100, seed=70 + i) for i in range(6)]
    a, b = (m.classify(texts)["posterior"] for m in (auto, fp32))
    assert np.abs(a - b).max() < 0.01
    by_int8, by_fp32 = (m.evaluate_by_condition()["bits_per_char"] for m in (auto, fp32))
    assert abs(by_int8 - by_fp32) < INT8_TOLERANCE
    assert auto.generate(condition={"label": "a"}, length=30, seed=2)  # generation too
    # lstmgen classify's auto keeps fp32 (int8 cost 0.03 of ROC AUC on the reviews)
    from lstmgen import api

    asked, load = [], api.load
    monkeypatch.setattr(api, "load", lambda *a, **k: asked.append(k["precision"]) or load(*a, **k))
    lstmgen.classify(tmp_path / "run", [tmp_path / "t.csv"], column="text")
    lstmgen.classify(tmp_path / "run", [tmp_path / "t.csv"], column="text", precision="int8")
    assert asked == ["fp32", "int8"]
