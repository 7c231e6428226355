"""Conditions: each document's values of table columns, joined to the input at every step.

The synthetic tables here put what a label decides late in each document (the digit after
every '#', the first '#' past character 150), far beyond what 32-step truncated
back-propagation can carry from a token at the document's start: only a condition given at
every step can steer it.
"""

from __future__ import annotations

import csv
import json
import random
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

import lstmgen
from lstmgen.classification import report
from lstmgen.cli import main
from lstmgen.data.prepare import prepare
from lstmgen.data.store import TokenStore
from lstmgen.run.finetune import initial_weights, open_base
from lstmgen.tokens import ConditionedTokenizer, load_tokenizer
from lstmgen.tokens.conditions import DOCUMENT_MARK, OTHER, Column

SMALL = {"hidden": 48, "embedding": 16, "layers": 1, "batch_size": 8, "seq_len": 32}
WORDS = "the cat sat on a mat and dog ran to big red house".split()  # noqa: SIM905
COMMON, RARE = "0123", "wxyz"  # rare labels (up to 7 documents each) share <other>: digit 9


def late_rows(count: int = 400, seed: int = 0) -> list[dict]:
    """Rows whose label (or, for the rare labels, 9) is the digit after each '#', and whose
    first '#' comes after 150 characters of filler; a second column, kind, says nothing."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = RARE[(i // 16) % 4] if i % 16 == 15 else COMMON[i % len(COMMON)]
        digit = "9" if label in RARE else label
        filler = ""
        while len(filler) < 155:
            filler += rng.choice(WORDS) + " "
        marks = " ".join(
            f"#{digit} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 6)))
            for _ in range(4)
        )
        rows.append({"label": label, "kind": rng.choice("ab"), "text": filler + marks + "."})
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def late_run(tmp_path_factory) -> Path:
    """A small model trained briefly on the late-signal table, with two condition columns."""
    root = tmp_path_factory.mktemp("conditions")
    table = write_csv(root / "late.csv", late_rows())
    lstmgen.train(
        [table],
        out=root / "run",
        column="text",
        condition_column=["label", "kind"],
        max_steps=1500,
        lr=0.02,
        quiet=True,
        **SMALL,
    )
    return root / "run"


def digits_after_marks(text: str) -> list[str]:
    return re.findall(r"#(\d)", text)


@pytest.mark.parametrize("label, digit", [("0", "0"), ("1", "1"), ("3", "3"), (OTHER, "9")])
def test_generation_follows_a_late_signal_of_its_label(late_run, label, digit):
    model = lstmgen.load(late_run)
    texts = model.generate(
        condition={"label": label}, length=600, seed=3, temperature=0.5, num_samples=4
    )
    found = [d for text in texts for d in digits_after_marks(text)]
    assert len(found) >= 8, texts
    share = sum(d == digit for d in found) / len(found)
    assert share >= 0.9, (label, share, found)


def test_the_document_mark_is_never_printed(late_run):
    model = lstmgen.load(late_run)
    texts = model.generate(length=400, seed=1, num_samples=3, temperature=1.5)
    texts += model.generate(condition="label=2", length=400, seed=2, num_samples=3)
    for text in texts:
        assert DOCUMENT_MARK not in text
    assert model.tokenizer.decode([model.tokenizer.document_id]) == ""


def test_the_classifier_reads_the_late_signal(late_run):
    model = lstmgen.load(late_run)
    rows = [r for r in late_rows(60, seed=7) if r["label"] in COMMON]
    result = model.classify([r["text"] for r in rows], column="label")
    assert result["values"] == [*COMMON, OTHER]
    assert result["posterior"].shape == (len(rows), 5)
    assert np.allclose(result["posterior"].sum(1), 1)
    labels = [r["label"] for r in rows]
    scores = report(result["values"], result["posterior"], labels, positive=["3"], negative=["0"])
    assert scores["accuracy"] >= 0.95, scores
    assert sum(map(sum, scores["confusion"])) == len(rows)
    assert scores["auc"] >= 0.95


def test_each_condition_is_scored_and_the_store_carries_each_documents_values(late_run):
    store = TokenStore.open(late_run / "data")
    tokenizer = load_tokenizer(late_run / "tokenizer.json")
    documents = store.documents("val")
    val = np.asarray(store.val)
    assert np.array_equal(np.flatnonzero(val == tokenizer.document_id), documents.starts)
    assert (
        len(documents.starts) == store.meta["val_documents"] == store.meta["control_tokens"]["val"]
    )
    # Each held-out document's digit is its label's (9 for <other>): the values belong to it.
    label_values = tokenizer.conditions.columns[0].values
    ends = [*documents.starts[1:], len(val)]
    for start, end, values in zip(documents.starts, ends, documents.values, strict=True):
        digits = set(digits_after_marks(tokenizer.decode(val[start:end])))
        label = label_values[values[0]]
        assert digits == {"9" if label == OTHER else label}
    # The held-out characters are the text's alone: decoded, the marks are nothing.
    assert store.meta["val_characters"] == len(tokenizer.decode(store.val))
    result = lstmgen.load(late_run).evaluate_by_condition()
    assert [c["column"] for c in result["columns"]] == ["label", "kind"]
    assert set(result["conditions"]) == {*COMMON, OTHER}
    assert result["characters"] == store.meta["val_characters"]
    best = lstmgen.info(late_run)["best_val_bits_per_char"]
    assert result["bits_per_char"] == pytest.approx(best, rel=1e-3)


def test_the_right_condition_scores_better_than_a_wrong_one(late_run):
    model = lstmgen.load(late_run)
    text = late_rows(8, seed=11)[1]["text"]  # label 1
    right = model.evaluate(text, condition={"label": "1"})["bits_per_char"]
    wrong = model.evaluate(text, condition={"label": "2"})["bits_per_char"]
    mixture = model.evaluate(text)["bits_per_char"]
    assert right < mixture < wrong


def test_a_warm_started_conditioned_model_computes_the_base_logits_at_step_0(tmp_path):
    table = write_csv(tmp_path / "late.csv", late_rows(120))
    lstmgen.train([table], out=tmp_path / "base", column="text", max_steps=20, quiet=True, **SMALL)
    lstmgen.train(
        [table],
        out=tmp_path / "tuned",
        column="text",
        condition_column="label",
        init_from=str(tmp_path / "base"),
        max_steps=5,
        quiet=True,
    )
    base = open_base(str(tmp_path / "base"))
    tuned = lstmgen.load(tmp_path / "tuned")
    config = tuned.module.config
    assert config.conditions == (5,) and config.hidden == 48
    fresh = type(tuned.module)(config)
    fresh.load_state_dict(initial_weights(base, config))
    fresh.eval()
    plain = lstmgen.load(tmp_path / "base").module
    ids = torch.from_numpy(plain_ids(tmp_path / "base", "the cat sat on a mat #2 and"))[None]
    for value in range(5):
        conditions = torch.full((1, len(ids[0]), 1), value)
        ours = fresh(ids, conditions=conditions)[0][..., : plain.config.vocab_size]
        assert torch.allclose(ours, plain(ids)[0], atol=1e-5)
    # and the tuned run goes on from there: it trained, and generates under a condition
    assert isinstance(tuned.generate(condition="2", length=30, seed=0), str)


def plain_ids(run: Path, text: str) -> np.ndarray:
    return np.asarray(load_tokenizer(run / "tokenizer.json").encode(text), dtype=np.int64)


def test_fine_tuning_a_conditioned_run_keeps_its_conditions(late_run, tmp_path):
    table = write_csv(tmp_path / "more.csv", late_rows(80, seed=5))
    lstmgen.train(
        [table],
        out=tmp_path / "more",
        column="text",
        condition_column=["label", "kind"],
        init_from=str(late_run),
        max_steps=5,
        quiet=True,
    )
    model = lstmgen.load(tmp_path / "more")
    assert model.conditions == lstmgen.load(late_run).conditions
    with pytest.raises(lstmgen.LstmgenError, match="condition column"):
        lstmgen.train(
            [table],
            out=tmp_path / "plain",
            column="text",
            init_from=str(late_run),
            max_steps=5,
            quiet=True,
        )


@pytest.mark.parametrize("level", ["word", "bpe"])
def test_word_and_bpe_levels_keep_one_mark_per_document(tmp_path, level):
    rows = late_rows(80)
    rows[0]["text"] += " \U00100001 reserved"  # a reserved character in the text is dropped
    table = write_csv(tmp_path / "late.csv", rows)
    options = {"vocab_size": 300} if level == "bpe" else {"max_vocab": 40}
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
    assert isinstance(tokenizer, ConditionedTokenizer)
    ids = np.concatenate([store.train, store.val])
    assert (ids == tokenizer.document_id).sum() == meta["documents"] == 80
    assert "\U00100001" not in tokenizer.decode(ids)
    lstmgen.train([tmp_path / "store"], out=tmp_path / "run", max_steps=3, quiet=True, **SMALL)
    assert isinstance(lstmgen.load(tmp_path / "run").generate(condition="1", length=5), str)


def test_rare_values_share_the_other_condition():
    column = Column.from_counts("Score", {"5": 30, "4": 12, "1": 3, "": 2}, min_count=10)
    assert column.values == ("4", "5", OTHER)
    assert column.documents == {"4": 12, "5": 30, OTHER: 5}
    assert column.of_document("1") == column.of_document("") == column.of_document("7") == 2
    assert column.prior == pytest.approx([12 / 47, 30 / 47, 5 / 47])


def test_jsonl_sqlite_and_parquet_tables_give_conditions(tmp_path):
    rows = late_rows(40)
    jsonl = tmp_path / "late.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"meta": {"stars": 5 if r["label"] == "0" else 1}, **r}) + "\n" for r in rows
        ),
        encoding="utf-8",
    )
    meta = prepare(
        [jsonl],
        out=tmp_path / "j",
        field="text",
        condition_field=["meta.stars", "kind"],
        min_condition_count=1,
        quiet=True,
    )
    columns = meta["conditions"]["columns"]
    assert [c["column"] for c in columns] == ["meta.stars", "kind"]
    assert columns[0]["documents"] == {"1": 30, "5": 10}
    db = tmp_path / "late.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE t (label TEXT, kind TEXT, text TEXT)")
        connection.executemany(
            "INSERT INTO t VALUES (?, ?, ?)", [(r["label"], r["kind"], r["text"]) for r in rows]
        )
    meta = prepare(
        [db],
        out=tmp_path / "s",
        table="t",
        column="text",
        condition_column=["kind", "label"],
        min_condition_count=1,
        quiet=True,
    )
    assert [c["column"] for c in meta["conditions"]["columns"]] == ["kind", "label"]
    assert sum(meta["conditions"]["columns"][1]["documents"].values()) == 40
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "late.parquet")
    meta = prepare(
        [tmp_path / "late.parquet"],
        out=tmp_path / "p",
        column="text",
        condition_column="label",
        min_condition_count=1,
        quiet=True,
    )
    assert meta["conditions"]["columns"][0]["documents"]["0"] == 10


# ----- the command line ---------------------------------------------------------------------
def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def one_line_error(code: int, err: str) -> str:
    assert code == 2
    assert "Traceback" not in err
    assert err.count("\n") == 1
    return err.strip()


def test_cli_generates_on_conditions_and_evaluates_per_condition(late_run, tmp_path, capsys):
    code, out, _ = run_cli(
        ["generate", late_run, "--condition", "label=2", "--condition", "kind=a"]
        + ["--length", "500", "--seed", "1", "--temperature", "0.5"],
        capsys,
    )
    assert code == 0
    found = digits_after_marks(out)
    assert found and sum(d == "2" for d in found) >= 0.9 * len(found)
    code, out, _ = run_cli(["evaluate", late_run, "--by-condition"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["label", "documents", "characters", "bits/char"]
    assert [line.split()[0] for line in lines[1:6]] == [*COMMON, OTHER]
    assert "kind" in out.split()
    code, _, err = run_cli(["evaluate", late_run, "held_out.txt", "--by-condition"], capsys)
    assert one_line_error(code, err) == (
        "lstmgen: error: --by-condition measures the run's own held-out documents; drop the sources"
    )
    code, out, _ = run_cli(["info", late_run], capsys)
    assert "conditions  label: 0 (" in out and "kind: a (" in out
    review = tmp_path / "one.txt"
    review.write_text(late_rows(4, seed=12)[3]["text"], encoding="utf-8")  # label 3
    bits = {}
    for label in ("3", "0"):
        code, out, _ = run_cli(
            ["evaluate", late_run, review, "--condition", f"label={label}", "--json"], capsys
        )
        bits[label] = json.loads(out)["bits_per_char"]
    assert bits["3"] < bits["0"]


def test_cli_classifies_labelled_documents(late_run, tmp_path, capsys):
    rows = [r for r in late_rows(40, seed=9) if r["label"] in COMMON]
    table = write_csv(tmp_path / "new.csv", rows)
    args = ["classify", late_run, table, "--column", "text", "--condition-column", "label"]
    code, out, _ = run_cli([*args, "--positive", "2,3", "--negative", "0,1", "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["column"] == "label" and result["documents"] == len(rows)
    assert result["accuracy"] >= 0.95 and result["auc"] >= 0.95
    assert len(result["predictions"]) == len(rows)
    assert result["predictions"][0]["label"] == rows[0]["label"]
    code, out, _ = run_cli(args, capsys)
    assert code == 0
    assert "accuracy" in out and "macro-F1" in out
    # no labels in the source: predictions only
    plain = write_csv(tmp_path / "plain.csv", [{"text": r["text"]} for r in rows])
    code, out, _ = run_cli(["classify", late_run, plain, "--column", "text", "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["accuracy"] is None and len(result["predictions"]) == len(rows)


def test_an_unknown_condition_value_lists_the_known_ones(late_run, capsys):
    code, _, err = run_cli(["generate", late_run, "--condition", "label=7"], capsys)
    assert one_line_error(code, err) == (
        "lstmgen: error: unknown condition label='7'; this model knows: "
        "'0', '1', '2', '3', '<other>'"
    )
    code, _, err = run_cli(["generate", late_run, "--condition", "7"], capsys)
    assert "must name its column as COLUMN=VALUE" in one_line_error(code, err)
    code, _, err = run_cli(["generate", late_run, "--condition", "stars=1"], capsys)
    assert "must name its column" in one_line_error(code, err)


def test_condition_on_a_run_without_conditions(trained_run, capsys):
    code, _, err = run_cli(["generate", trained_run, "--condition", "A"], capsys)
    assert "trained without conditions" in one_line_error(code, err)
    code, _, err = run_cli(["evaluate", trained_run, "--by-condition"], capsys)
    assert "trained without conditions" in one_line_error(code, err)
    code, _, err = run_cli(["classify", trained_run, "x.txt"], capsys)
    assert "trained without conditions" in one_line_error(code, err)


def test_a_condition_column_not_in_the_table(tmp_path, capsys):
    table = write_csv(tmp_path / "late.csv", late_rows(20))
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
    assert one_line_error(code, err).endswith(
        "has no column 'stars'; its columns are: label, kind, text"
    )
    code, _, err = run_cli(
        ["prepare", table, "--condition-column", "label", "--out", tmp_path / "s"], capsys
    )
    assert "--condition-column label needs --column" in one_line_error(code, err)


# ----- the server -----------------------------------------------------------------------------
def test_the_server_takes_conditions_lists_them_and_refuses_unknown_ones(late_run):
    from fastapi.testclient import TestClient

    from lstmgen.serve import create_app

    with TestClient(create_app([late_run], max_batch=16, max_tokens=600)) as client:
        card = client.get("/v1/models").json()["data"][0]
        assert card["conditions"] == {"label": [*COMMON, OTHER], "kind": ["a", "b"]}
        schema = client.get("/openapi.json").json()["components"]["schemas"]
        assert "condition" in schema["CompletionRequest"]["properties"]
        body = {"prompt": "", "max_tokens": 500, "temperature": 0.5, "seed": 4, "n": 2}
        reply = client.post("/v1/completions", json={**body, "condition": {"label": "1"}})
        assert reply.status_code == 200
        found = [d for c in reply.json()["choices"] for d in digits_after_marks(c["text"])]
        assert found and sum(d == "1" for d in found) >= 0.9 * len(found)
        # the same seed and condition again: the same text
        alone = client.post("/v1/completions", json={**body, "condition": {"label": "1"}})
        assert alone.json()["choices"][0]["text"] == reply.json()["choices"][0]["text"]
        # the string forms the manual shows: "COLUMN=VALUE", and a list of them
        for asked in ("label=1", ["label=1"]):
            same = client.post("/v1/completions", json={**body, "condition": asked})
            assert same.status_code == 200, same.text
            assert same.json()["choices"][0]["text"] == reply.json()["choices"][0]["text"]
        # a bare value names the only column; this run has two
        bare = client.post("/v1/completions", json={**body, "condition": "1"})
        assert bare.status_code == 400 and "COLUMN=VALUE" in bare.json()["error"]["message"]
        reply = client.post("/v1/completions", json={**body, "condition": {"label": "7"}})
        assert reply.status_code == 400
        error = reply.json()["error"]
        assert error["param"] == "condition" and "this model knows: '0'" in error["message"]


def test_the_report_counts_pairs_for_the_auc_and_averages_f1_over_values():
    values = ["1", "2", "5"]
    posterior = np.array([[0.7, 0.2, 0.1], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8], [0.5, 0.1, 0.4]])
    labels = ["1", "1", "5", "5"]
    scores = report(values, posterior, labels, positive=["5"], negative=["1", "2"])
    # P(5): positives 0.8, 0.4; negatives 0.1, 0.6 → pairs ordered right: 0.8>0.1, 0.8>0.6,
    # 0.4>0.1 (3 of 4)
    assert scores["auc"] == pytest.approx(3 / 4)
    assert scores["confusion"] == [[1, 0, 1], [0, 0, 0], [1, 0, 1]]
    assert scores["accuracy"] == pytest.approx(0.5)
    assert scores["macro_f1"] == pytest.approx(0.5)  # value 2 has no document: not averaged
    with pytest.raises(lstmgen.LstmgenError, match="not a value"):
        report(values, posterior, labels, positive=["9"], negative=["1"])


def test_each_process_reads_its_streams_conditions_and_each_input_gets_its_targets_document():
    from lstmgen.data.store import Documents
    from lstmgen.training.batches import StreamBatches

    tokens = np.arange(1000) % 50
    starts = np.array([0, 37, 200, 201, 530, 777])
    documents = Documents(starts, np.array([[k % 3, k % 2] for k in range(len(starts))]))
    whole = StreamBatches(tokens, 8, 16, seed=1, epoch=2, documents=documents)
    for rank in (0, 1):
        own = StreamBatches(tokens, 4, 16, seed=1, epoch=2, rank=rank, ranks=2, documents=documents)
        for index in (0, len(own) - 1):
            rows = slice(4 * rank, 4 * rank + 4)
            assert torch.equal(own.get(index)[0], whole.get(index)[0][rows])
            assert torch.equal(own.conditions(index), whole.conditions(index)[rows])
    # input j predicts target j + 1: it takes the document of the target's position
    x, y = whole.get(3)
    conditions = whole.conditions(3)
    for b in range(8):
        for t in range(16):
            position = whole._first_target[b] + 3 * 16 + t
            assert int(y[b, t]) == tokens[position]
            document = np.searchsorted(starts, position, side="right") - 1
            assert conditions[b, t].tolist() == documents.values[document].tolist()


def test_classify_and_evaluate_mistakes_are_one_line(late_run, tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("text\n", encoding="utf-8")  # a header and no rows
    code, _, err = run_cli(["classify", late_run, empty, "--column", "text"], capsys)
    assert "no documents" in one_line_error(code, err)
    table = write_csv(tmp_path / "some.csv", late_rows(4))
    code, _, err = run_cli(
        ["classify", late_run, table, "--column", "text", "--predict", "stars"], capsys
    )
    assert one_line_error(code, err) == (
        "lstmgen: error: unknown condition column 'stars'; this model's: label, kind"
    )
    code, _, err = run_cli(
        ["evaluate", late_run, "--by-condition", "--condition", "label=1"], capsys
    )
    assert "drop --condition" in one_line_error(code, err)
