"""Conditions: a control token per value of a table column, before each document."""

from __future__ import annotations

import csv
import json
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import lstmgen
from lstmgen.cli import main
from lstmgen.data.prepare import prepare
from lstmgen.data.store import TokenStore
from lstmgen.tokens import ConditionedTokenizer, load_tokenizer
from lstmgen.tokens.conditions import FIRST_MARK, OTHER, Conditions

FIRST, SECOND = set("abcdefghijklm"), set("nopqrstuvwxyz")
SMALL = {"hidden": 48, "embedding": 16, "layers": 1, "batch_size": 8, "seq_len": 32}


def ab_rows(count: int = 300, seed: int = 0) -> list[dict]:
    """Rows whose text uses only a–m under condition A and only n–z under B."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = "A" if i % 2 == 0 else "B"
        letters = sorted(FIRST if label == "A" else SECOND)
        words = [
            "".join(rng.choice(letters) for _ in range(rng.randint(2, 5)))
            for _ in range(rng.randint(4, 9))
        ]
        rows.append({"label": label, "text": " ".join(words) + "."})
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def ab_run(tmp_path_factory) -> Path:
    """A small model trained briefly on the A/B table."""
    root = tmp_path_factory.mktemp("conditions")
    table = write_csv(root / "ab.csv", ab_rows())
    lstmgen.train(
        [table],
        out=root / "run",
        column="text",
        condition_column="label",
        max_steps=400,
        quiet=True,
        **SMALL,
    )
    return root / "run"


def letters(text: str) -> list[str]:
    return [c for c in text if c.isalpha()]


def test_generation_follows_the_condition(ab_run):
    model = lstmgen.load(ab_run)
    for condition, wanted in (("A", FIRST), ("B", SECOND)):
        text = model.generate(condition=condition, length=400, seed=3, temperature=0.8)
        chars = letters(text)
        share = sum(c in wanted for c in chars) / len(chars)
        assert share > 0.9, (condition, share, text[:200])


def test_control_tokens_are_never_printed(ab_run):
    model = lstmgen.load(ab_run)
    texts = model.generate(length=300, seed=1, num_samples=3, temperature=1.5)
    texts += model.generate(condition="B", length=300, seed=2, num_samples=3, temperature=1.5)
    for text in texts:
        assert not any(ord(c) >= FIRST_MARK for c in text)
    assert model.tokenizer.decode(list(model.tokenizer.control_ids.values())) == ""


def test_bits_per_char_leaves_out_control_tokens(ab_run):
    store = TokenStore.open(ab_run / "data")
    meta, tokenizer = store.meta, load_tokenizer(ab_run / "tokenizer.json")
    controls = np.isin(np.asarray(store.val), list(tokenizer.is_control))
    assert meta["control_tokens"]["val"] == int(controls.sum()) == meta["val_documents"]
    # The held-out characters are the text's alone: decoded, the control tokens are nothing.
    assert meta["val_characters"] == len(tokenizer.decode(store.val))
    model = lstmgen.load(ab_run)
    result = model.evaluate_by_condition()
    assert set(result["conditions"]) == {"A", "B"}
    assert result["characters"] == meta["val_characters"]
    # info's held-out figure excludes them too: the same number as the per-condition total.
    best = lstmgen.info(ab_run)["best_val_bits_per_char"]
    assert result["bits_per_char"] == pytest.approx(best, rel=1e-4)


def test_a_store_with_conditions_round_trips_through_prepare_and_train(tmp_path):
    table = write_csv(tmp_path / "ab.csv", ab_rows(120))
    meta = prepare(
        [table],
        out=tmp_path / "store",
        column="text",
        condition_column="label",
        min_condition_count=1,
        quiet=True,
    )
    assert meta["conditions"]["documents"] == {"A": 60, "B": 60}
    lstmgen.train([tmp_path / "store"], out=tmp_path / "run", max_steps=5, quiet=True, **SMALL)
    tokenizer = load_tokenizer(tmp_path / "run" / "tokenizer.json")
    assert isinstance(tokenizer, ConditionedTokenizer)
    assert tokenizer.conditions.values == ("A", "B")
    text = lstmgen.load(tmp_path / "run").generate(condition="A", length=20, seed=0)
    assert isinstance(text, str)


@pytest.mark.parametrize("level", ["word", "bpe"])
def test_word_and_bpe_levels_keep_one_control_token_per_document(tmp_path, level):
    rows = ab_rows(80)
    rows[0]["text"] += " \U00100001 reserved"  # a reserved character in the text is dropped
    table = write_csv(tmp_path / "ab.csv", rows)
    options = {"vocab_size": 300} if level == "bpe" else {"max_vocab": 30}
    meta = prepare(
        [table],
        out=tmp_path / "store",
        column="text",
        condition_column="label",
        level=level,
        quiet=True,
        **options,
    )
    store = TokenStore.open(tmp_path / "store")
    tokenizer = load_tokenizer(tmp_path / "store" / "tokenizer.json")
    ids = np.concatenate([store.train, store.val])
    assert np.isin(ids, list(tokenizer.is_control)).sum() == meta["documents"] == 80
    assert "\U00100001" not in tokenizer.decode(ids)


def test_rare_values_share_the_other_condition():
    counts = {"5": 30, "4": 12, "1": 3, "": 2}
    conditions = Conditions.from_counts(counts, min_count=10, column="Score", separator="\n\n")
    assert conditions.values == ("4", "5", OTHER)
    assert conditions.documents == {"4": 12, "5": 30, OTHER: 5}
    assert conditions.mark("1") == conditions.mark("") == conditions.mark("unseen")


def test_jsonl_sqlite_and_parquet_tables_give_conditions(tmp_path):
    rows = ab_rows(40)
    jsonl = tmp_path / "ab.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"meta": {"stars": 5 if r["label"] == "A" else 1}, **r}) + "\n" for r in rows
        ),
        encoding="utf-8",
    )
    meta = prepare(
        [jsonl],
        out=tmp_path / "j",
        field="text",
        condition_field="meta.stars",
        min_condition_count=1,
        quiet=True,
    )
    assert meta["conditions"]["documents"] == {"1": 20, "5": 20}
    db = tmp_path / "ab.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE t (label TEXT, text TEXT)")
        connection.executemany(
            "INSERT INTO t VALUES (?, ?)", [(r["label"], r["text"]) for r in rows]
        )
    meta = prepare(
        [db],
        out=tmp_path / "s",
        table="t",
        column="text",
        condition_column="label",
        min_condition_count=1,
        quiet=True,
    )
    assert meta["conditions"]["documents"] == {"A": 20, "B": 20}
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ab.parquet")
    meta = prepare(
        [tmp_path / "ab.parquet"],
        out=tmp_path / "p",
        column="text",
        condition_column="label",
        min_condition_count=1,
        quiet=True,
    )
    assert meta["conditions"]["documents"] == {"A": 20, "B": 20}


# ----- the command line ---------------------------------------------------------------------
def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_cli_generates_on_a_condition_and_evaluates_per_condition(ab_run, capsys):
    code, out, _ = run_cli(
        ["generate", ab_run, "--condition", "B", "--length", "80", "--seed", "1"], capsys
    )
    assert code == 0
    first = letters(out.split("\n\n")[0])  # the first document: the one the prime conditions
    assert sum(c in SECOND for c in first) > 0.8 * len(first)
    code, out, _ = run_cli(["evaluate", ab_run, "--by-condition"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["label", "documents", "characters", "bits/char"]
    assert [line.split()[0] for line in lines[1:]] == ["A", "B", "all"]
    code, _, err = run_cli(["evaluate", ab_run, "held_out.txt", "--by-condition"], capsys)
    assert one_line_error(code, err) == (
        "lstmgen: error: --by-condition measures the run's own held-out documents; drop the sources"
    )
    code, out, _ = run_cli(["info", ab_run], capsys)
    assert "conditions  label: A (150), B (150) documents" in out


def one_line_error(code: int, err: str) -> str:
    assert code == 2
    assert "Traceback" not in err
    assert err.count("\n") == 1
    return err.strip()


def test_an_unknown_condition_value_lists_the_known_ones(ab_run, capsys):
    code, _, err = run_cli(["generate", ab_run, "--condition", "C"], capsys)
    assert one_line_error(code, err) == (
        "lstmgen: error: unknown condition 'C'; this model knows: 'A', 'B'"
    )


def test_condition_on_a_run_without_conditions(trained_run, capsys):
    code, _, err = run_cli(["generate", trained_run, "--condition", "A"], capsys)
    assert "trained without conditions" in one_line_error(code, err)
    code, _, err = run_cli(["evaluate", trained_run, "--by-condition"], capsys)
    assert "trained without conditions" in one_line_error(code, err)


def test_a_condition_column_not_in_the_table(tmp_path, capsys):
    table = write_csv(tmp_path / "ab.csv", ab_rows(20))
    code, _, err = run_cli(
        [
            "prepare",
            table,
            "--column",
            "text",
            "--condition-column",
            "stars",
            "--out",
            tmp_path / "s",
        ],
        capsys,
    )
    assert one_line_error(code, err).endswith("has no column 'stars'; its columns are: label, text")
    code, _, err = run_cli(
        ["prepare", table, "--condition-column", "label", "--out", tmp_path / "s"], capsys
    )
    assert "--condition-column label needs --column" in one_line_error(code, err)
