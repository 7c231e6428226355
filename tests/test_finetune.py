"""Fine-tuning: --init-from BASE starts from a base run's weights, shape and vocabulary."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests.conftest import TINY, make_text

import lstmgen
from lstmgen.cli import main
from lstmgen.files import read_progress
from lstmgen.tokens import load_tokenizer


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base")
    corpus = root / "base.txt"
    corpus.write_text(make_text(12_000, seed=1), encoding="utf-8")
    lstmgen.train([corpus], out=root / "base", max_steps=30, quiet=True, **TINY)
    return root / "base"


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def new_corpus(tmp_path: Path) -> Path:
    """The base's kind of text with characters it never saw ('Q', 'z', '!')."""
    path = tmp_path / "new.txt"
    path.write_text(("Quiz the zebra! " * 30 + make_text(6_000, seed=2)) * 2, encoding="utf-8")
    return path


def test_fine_tune_starts_from_the_base_and_extends_its_vocabulary(base_run, tmp_path):
    before = digests(base_run / "best")
    lstmgen.train(
        [new_corpus(tmp_path)], out=tmp_path / "tuned", init_from=str(base_run), max_steps=1,
        quiet=True, lr=1e-12, warmup_steps=0,
    )  # fmt: skip
    assert digests(base_run / "best") == before  # the base's best checkpoint is only read
    old = load_tokenizer(base_run / "tokenizer.json")
    new = load_tokenizer(tmp_path / "tuned" / "tokenizer.json")
    assert new.chars[: len(old.chars)] == old.chars  # old ids keep their rows
    assert {"Q", "z", "!"} <= set(new.chars[len(old.chars) :])
    base = load_file(base_run / "best" / "model.safetensors")
    tuned = load_file(tmp_path / "tuned" / "model.safetensors")
    vocab = old.vocab_size
    # One step at lr 1e-12 leaves the weights as they started: the base's.
    for name, tensor in base.items():
        rows = (
            tuned[name][:vocab]
            if name in ("embed.weight", "head.weight", "head.bias")
            else tuned[name]
        )
        assert torch.allclose(rows, tensor, atol=1e-6), name
    # New rows start from the mean of the base's.
    assert torch.allclose(tuned["embed.weight"][vocab:], base["embed.weight"].mean(0), atol=1e-6)
    info = lstmgen.info(tmp_path / "tuned")
    assert info["base"]["run"] == str(base_run)
    # the base's best checkpoint: where its held-out loss was lowest
    assert info["base"]["step"] == read_progress(base_run / "best" / "model.safetensors")["step"]
    assert info["base"]["added_tokens"] == new.vocab_size - vocab
    assert info["model"]["hidden"] == TINY["hidden"]


def test_fine_tune_defaults_and_latest_checkpoint(base_run, tmp_path):
    lstmgen.train(
        [new_corpus(tmp_path)], out=tmp_path / "tuned", init_from=f"{base_run}:latest",
        max_steps=2, quiet=True,
    )  # fmt: skip
    info = lstmgen.info(tmp_path / "tuned")
    assert info["base"]["checkpoint"] == "latest"
    from lstmgen.run.finetune import FINE_TUNE_LR, FINE_TUNE_WARMUP_STEPS

    assert info["train"]["lr"] == FINE_TUNE_LR
    assert info["train"]["warmup_steps"] == FINE_TUNE_WARMUP_STEPS


def test_word_level_fine_tune_adds_words(tmp_path):
    base_text = tmp_path / "base.txt"
    base_text.write_text(make_text(8_000, seed=3), encoding="utf-8")
    lstmgen.train([base_text], out=tmp_path / "base", level="word", max_steps=3, quiet=True, **TINY)
    lstmgen.train(
        [new_corpus(tmp_path)], out=tmp_path / "tuned", init_from=str(tmp_path / "base"),
        max_steps=2, quiet=True,
    )  # fmt: skip
    old = load_tokenizer(tmp_path / "base" / "tokenizer.json")
    new = load_tokenizer(tmp_path / "tuned" / "tokenizer.json")
    assert new.kind == "word"
    assert new.words[: len(old.words)] == old.words
    assert " zebra" in new.words[len(old.words) :]


def run_cli(args: list, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    assert err.count("\n") == 1
    return exit_info.value.code, err.strip()


def test_architecture_options_are_refused(base_run, tmp_path, capsys):
    corpus = new_corpus(tmp_path)
    code, err = run_cli(
        ["train", corpus, "--out", tmp_path / "t", "--init-from", base_run, "--hidden", "64"],
        capsys,
    )
    assert code == 2
    assert err == (
        f"lstmgen: error: --hidden 64 would change the architecture of --init-from {base_run} "
        f"(hidden {TINY['hidden']}); drop it"
    )
    code, err = run_cli(
        ["train", corpus, "--out", tmp_path / "t", "--init-from", base_run, "--level", "bpe"],
        capsys,
    )
    assert code == 2 and "differs from --init-from" in err
    assert not (tmp_path / "t").exists()


def test_init_from_a_missing_run(tmp_path, capsys):
    corpus = new_corpus(tmp_path)
    missing = tmp_path / "nothing"
    code, err = run_cli(["train", corpus, "--out", tmp_path / "t", "--init-from", missing], capsys)
    assert code == 2
    assert err == (
        f"lstmgen: error: --init-from {missing}: {missing} is not a trained run; train the "
        f"base first with: lstmgen train TEXT --out {missing}"
    )


def test_a_fine_tune_resumed_before_its_first_checkpoint_starts_from_its_base(base_run, tmp_path):
    out = tmp_path / "tuned"
    options = {"init_from": str(base_run), "quiet": True, "lr": 1e-12, "warmup_steps": 0}
    lstmgen.train([new_corpus(tmp_path)], out=out, max_steps=1, **options)
    for name in ("model.safetensors", "trainer_state.pt", "metrics.jsonl"):
        (out / name).unlink()  # as if stopped before its first checkpoint
    for path in (out / "best").iterdir():
        path.unlink()
    lstmgen.train(out=out, resume=True, max_steps=1, quiet=True)
    base = load_file(base_run / "best" / "model.safetensors")
    tuned = load_file(out / "model.safetensors")
    assert torch.allclose(tuned["rnn.weight_hh_l0"], base["rnn.weight_hh_l0"], atol=1e-6)


def test_bpe_fine_tune_keeps_the_base_tokenizer(tmp_path):
    base_text = tmp_path / "base.txt"
    base_text.write_text(make_text(8_000, seed=4), encoding="utf-8")
    options = {"quiet": True, "max_steps": 2}
    lstmgen.train(
        [base_text], out=tmp_path / "base", level="bpe", vocab_size=300, **options, **TINY
    )
    lstmgen.train(
        [new_corpus(tmp_path)], out=tmp_path / "tuned", init_from=str(tmp_path / "base"), **options
    )
    base = (tmp_path / "base" / "tokenizer.json").read_text(encoding="utf-8")
    assert (tmp_path / "tuned" / "tokenizer.json").read_text(encoding="utf-8") == base
    assert lstmgen.info(tmp_path / "tuned")["base"]["added_tokens"] == 0
