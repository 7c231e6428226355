"""lstmgen tune: reproducible, resumable after SIGKILL, pruning recorded, --config, errors."""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

import lstmgen
from conftest import make_text
from lstmgen.tuning import tune
from test_cli import run_cli

optuna = pytest.importorskip("optuna", reason="Optuna is in the test extra; not installed")

SPACE = """
[hidden]
choices = [16, 24]
[lr]
low = 0.003
high = 0.03
log = true
[dropout]
low = 0.0
high = 0.3
[layers]
value = 1
[embedding]
value = 8
[seq_len]
value = 16
[batch_size]
value = 4
"""


@pytest.fixture
def setup(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(make_text(12_000), encoding="utf-8")
    space = tmp_path / "space.toml"
    space.write_text(SPACE, encoding="utf-8")
    return corpus, space


def trials_of(folder):
    study = optuna.load_study(study_name="lstmgen", storage=f"sqlite:///{folder / 'study.db'}")
    return [(t.number, t.state.name, t.params, t.value) for t in study.trials]


def finished_trials(folder) -> int:
    """Completed trials, read with sqlite3 read-only while the search runs: optuna.load_study
    creates the schema where it is missing, and so raced the child creating it (a UNIQUE
    constraint failure on alembic_version killed the child once)."""
    uri = f"file:{folder / 'study.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        return db.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]


def test_a_seeded_search_is_reproducible(setup, tmp_path):
    corpus, space = setup
    runs = []
    for name in ("a", "b"):
        best = tune(
            [corpus], out=tmp_path / name, trial_steps=8, trials=3, space=space, seed=5, quiet=True
        )
        runs.append((best, trials_of(tmp_path / name)))
    (best_a, trials_a), (best_b, trials_b) = runs
    assert trials_a == trials_b and len(trials_a) == 3
    assert {state for _, state, _, _ in trials_a} == {"COMPLETE"}
    assert len({json.dumps(params) for _, _, params, _ in trials_a}) == 3  # three settings tried
    assert best_a["bits_per_char"] == best_b["bits_per_char"] == min(v for *_, v in trials_a)
    assert (tmp_path / "a" / "history.png").is_file() and (tmp_path / "a" / "best.json").is_file()
    another = tune([corpus], out=tmp_path / "c", trial_steps=8, trials=3, space=space, seed=6)
    assert another["params"] != best_a["params"] or trials_of(tmp_path / "c") != trials_a


def test_a_killed_search_resumes_with_its_finished_trials(setup, tmp_path):
    corpus, space = setup
    out = tmp_path / "t"
    command = [sys.executable, "-m", "lstmgen", "tune", str(corpus), "--out", str(out)]
    command += ["--trial-steps", "60", "--trials", "3", "--space", str(space), "-q"]
    child = subprocess.Popen(command, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            if (out / "study.db").exists():
                try:
                    if finished_trials(out):
                        break
                except sqlite3.Error:  # the database is being created
                    pass
            time.sleep(0.05)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    before = [t for t in trials_of(out) if t[1] == "COMPLETE"]
    assert before and child.returncode == -signal.SIGKILL
    tune(out=out, resume=True, quiet=True)
    after = trials_of(out)
    assert [t for t in after if t[1] in ("COMPLETE", "PRUNED")][: len(before)] == before
    assert sum(t[1] in ("COMPLETE", "PRUNED") for t in after) == 3


class PruneTheSecond(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return trial.number == 1


def test_a_pruned_trial_is_recorded_as_pruned(setup, tmp_path):
    corpus, space = setup
    out = tmp_path / "t"
    tune([corpus], out=out, trial_steps=40, trials=2, space=space, pruner=PruneTheSecond())
    states = [state for _, state, _, _ in trials_of(out)]
    assert states == ["COMPLETE", "PRUNED"]
    assert lstmgen.info(out / "trials" / "0001")["steps"] < 40  # stopped early, checkpointed


def test_config_reproduces_a_trials_settings(setup, tmp_path, capsys):
    corpus, space = setup
    out = tmp_path / "t"
    best = tune([corpus], out=out, trial_steps=8, trials=2, space=space, quiet=True)
    trial = out / "trials" / f"{best['trial']:04d}"
    code, _, err = run_cli(
        ["train", out / "data", "--out", tmp_path / "again", "--config", out / "best.json"]
        + ["--max-steps", "8", "-q"],
        capsys,
    )
    assert code == 0, err
    old, new = (json.loads((d / "config.json").read_text()) for d in (trial, tmp_path / "again"))
    assert old["train"].pop("curve_tokens") == 16_384  # the tune's one sample for the pruner
    assert new["train"].pop("curve_tokens") is None
    assert new["model"] == old["model"] and new["train"] == old["train"]
    a, b = (load_file(str(d / "model.safetensors")) for d in (trial, tmp_path / "again"))
    assert all((a[k] == b[k]).all() for k in a)  # the same settings and steps: the same weights


@pytest.mark.parametrize(
    "space, message",
    [
        ("[hiden]\nvalue = 3\n", "[hiden] is not an option that can be tuned"),
        ("[lr]\nlow = 0.1\nhigh = 0.01\n", "[lr] needs numbers low < high"),
        ("[lr]\nlow = 0\nhigh = 0.1\nlog = true\n", "[lr] log = true needs low > 0"),
        ("[lr]\nlow = 0.1\nchoices = [1]\n", "[lr] needs exactly one of low/high"),
        ("[lr\n", "is not valid TOML"),
        ('[hidden]\nchoices = ["big"]\n', "[hidden] 'big' is not a whole number"),
        ("[batch_size]\nlow = 8.0\nhigh = 16.0\n", "[batch_size] needs whole numbers low < high"),
    ],
)
def test_a_bad_space_is_one_line(setup, tmp_path, capsys, space, message):
    corpus, _ = setup
    (tmp_path / "bad.toml").write_text(space, encoding="utf-8")
    args = ["tune", corpus, "--out", tmp_path / "t", "--trial-steps", "5", "--space"]
    code, _, err = run_cli([*args, tmp_path / "bad.toml"], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "flags, message",
    [
        ([], "give each trial a budget: --trial-time (e.g. 60s) or --trial-steps"),
        (["--trial-time", "10s", "--trial-steps", "5"], "give each trial a budget"),
        (["--trial-time", "soon"], "--trial-time"),
        (["--trial-steps", "5", "--trials", "0"], "--trials 0 must be at least 1"),
        (["--trial-steps", "5", "--timeout", "0s"], "--timeout: duration '0s' must be more"),
    ],
)
def test_a_bad_budget_is_one_line(setup, tmp_path, capsys, flags, message):
    corpus, _ = setup
    code, _, err = run_cli(["tune", corpus, "--out", tmp_path / "t", *flags], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "t").exists()  # nothing half-made


def test_resume_of_a_folder_that_is_no_tune_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(["tune", "--resume", tmp_path], capsys)
    assert code == 2 and "is not a tune directory" in err and err.count("\n") == 1, err


def test_three_failed_trials_in_a_row_stop_the_search_in_one_line(setup, tmp_path, capsys):
    corpus, _ = setup
    (tmp_path / "s.toml").write_text("[dropout]\nvalue = 1.0\n", encoding="utf-8")
    args = ["tune", corpus, "--out", tmp_path / "t", "--trial-steps", "5", "--trials", "2"]
    code, _, err = run_cli([*args, "--space", tmp_path / "s.toml"], capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and "3 trials in a row failed" in last and "--dropout 1.0" in last, err
    assert [state for _, state, _, _ in trials_of(tmp_path / "t")] == ["FAIL"] * 3


def test_a_hidden_range_is_searched_as_whole_numbers(setup, tmp_path):
    corpus, _ = setup
    space = tmp_path / "s.toml"
    space.write_text(SPACE.replace("choices = [16, 24]", "low = 16\nhigh = 24"), encoding="utf-8")
    best = tune([corpus], out=tmp_path / "t", trial_steps=5, trials=2, space=space, quiet=True)
    assert isinstance(best["params"]["hidden"], int) and 16 <= best["params"]["hidden"] <= 24


def test_the_seed_of_a_search_is_fixed_at_its_start(setup, tmp_path, capsys):
    code, _, err = run_cli(["tune", "--resume", tmp_path, "--seed", "3"], capsys)
    assert code == 2 and "only --trials and --timeout" in err, err
