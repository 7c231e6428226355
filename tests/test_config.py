"""RunConfig: built once from options, saved as config.json, read back, changed on resume."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import fields

import pytest

from lstmgen.config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    SampleConfig,
    TrainConfig,
    parse_duration,
)
from lstmgen.errors import LstmgenError


def test_options_go_to_their_sections_and_are_remembered_as_given():
    config = RunConfig.from_options({"hidden": 48, "max_time": "2m", "column": "text", "lr": 0.5})
    assert (config.model.hidden, config.train.max_time_s, config.data.column) == (48, 120.0, "text")
    assert config.train.lr == 0.5 and config.model.layers == ModelConfig().layers
    assert config.given == {"hidden", "max_time", "column", "lr"}
    assert config.given_in("model") == {"hidden"} and config.given_in("data") == {"column"}


def test_an_unknown_or_bad_option_is_one_line_naming_it():
    with pytest.raises(LstmgenError, match="unknown training option.*hiden"):
        RunConfig.from_options({"hiden": 48})
    with pytest.raises(LstmgenError, match="--max-time"):
        RunConfig.from_options({"max_time": "soon"})
    with pytest.raises(LstmgenError, match="--lr or --lr-finder, not both"):
        RunConfig.from_options({"lr": 0.1, "lr_finder": True})
    with pytest.raises(LstmgenError, match="--device 'gpu' is not a device"):
        RunConfig.from_options({"device": "gpu"})


def test_config_json_round_trips_and_old_runs_get_the_settings_they_trained_with():
    config = RunConfig.from_options({"hidden": 48, "seq_len": 8})
    saved = config.to_json()
    assert RunConfig.from_json(json.loads(json.dumps(saved))).to_json() == saved
    old = {**saved, "model": {k: v for k, v in saved["model"].items() if k != "activation_reg"}}
    assert RunConfig.from_json(old).model.activation_reg == 0.0  # before AR became the default
    assert ModelConfig().activation_reg == 2.0


def test_resume_changes_only_what_may_change_and_writes_nothing_else():
    config = RunConfig.from_options({"hidden": 48, "max_time": "1m"})
    # Restating a fixed setting with its own value is harmless and lands nowhere.
    same = config.resumed({"hidden": 48}, progress={})
    assert same.to_json() == config.to_json() and "hidden" not in same.to_json()["train"]
    with pytest.raises(LstmgenError, match="cannot change --hidden"):
        config.resumed({"hidden": 64}, progress={})
    # A time limit already reached is dropped when another limit is given.
    longer = config.resumed({"epochs": 4}, progress={"elapsed_s": 61.0, "epoch": 1})
    assert (longer.train.max_time, longer.train.epochs) == (None, 4)
    kept = config.resumed({"epochs": 4}, progress={"elapsed_s": 10.0, "epoch": 1})
    assert (kept.train.max_time, kept.train.epochs) == ("1m", 4)


def test_durations():
    assert [parse_duration(v) for v in ("90s", "10m", "2h", "1h30m", "45", 7)] == [
        90.0,
        600.0,
        7200.0,
        5400.0,
        45.0,
        7.0,
    ]
    for bad in ("", "ten minutes", "1.5.2", "0s"):
        with pytest.raises(LstmgenError):
            parse_duration(bad)


def test_sampling_settings_are_checked_once_and_accept_a_config_or_keywords():
    settings = SampleConfig.build({"length": 5}, temperature=0.0)
    assert (settings.length, settings.temperature) == (5, 0.0)
    assert SampleConfig.build(settings) is settings
    with pytest.raises(LstmgenError, match="unknown sampling setting.*lenght"):
        SampleConfig.build(lenght=5)


@pytest.mark.parametrize(
    ("command", "sections"),
    [
        ("prepare", (DataConfig,)),
        ("train", (DataConfig, ModelConfig, TrainConfig)),
        ("generate", (SampleConfig,)),
    ],
)
def test_every_option_of_the_config_is_a_flag_of_the_command(command, sections):
    done = subprocess.run(
        [sys.executable, "-m", "lstmgen", command, "--help"],
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"},
    )
    flags = set(re.findall(r"--[a-z][a-z0-9-]*", done.stdout))
    for section in sections:
        for spec in fields(section):
            if "panel" in spec.metadata:
                flag = (spec.metadata["flag"] or "--" + spec.name.replace("_", "-")).split("/")[0]
                assert flag in flags, f"{spec.name} has no {flag} in `lstmgen {command} --help`"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("model", "hidden", "big"),
            "run/config.json: model.hidden is 'big', which is not a whole",
        ),
        (("model", "dropout", None), "model.dropout is None, which is not a number"),
        (("train", "epochs", "2"), "train.epochs is '2', which is not a whole number or null"),
        (("model", "hidden", 0), "run/config.json: model section: --hidden must be at least 1"),
        (("model", "hidden", ...), "run/config.json lacks model.hidden, which the model's shape"),
        (("train", ..., ...), "run/config.json has no 'train' section"),
    ],
)
def test_a_bad_config_json_is_one_line_naming_the_file_and_field(tmp_path, change, message):
    section, key, value = change
    data = RunConfig.from_options({"hidden": 48}).to_json()
    if key is ...:
        del data[section]
    elif value is ...:
        del data[section][key]
    else:
        data[section][key] = value
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(data))
    with pytest.raises(LstmgenError) as error:
        RunConfig.read(tmp_path / "run")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_config_from_another_run_leaves_out_what_this_run_decides(tmp_path):
    import json

    from lstmgen.config import ModelConfig, RunConfig, TrainConfig

    config = RunConfig(model=ModelConfig(hidden=48, embedding=32), train=TrainConfig(lr=0.02))
    data = {**config.to_json(), "sizing": {"hidden": 48, "limited_by": "time"}}
    data["train"]["max_time"], data["model"]["freeze_embeddings"] = "60s", True
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    plain = RunConfig.settings_in(path, given={})
    assert plain["lr"] == 0.02 and plain["embedding"] == 32
    # sized for the other run's budget, a limit of its own, and vectors it does not have
    assert not {"hidden", "max_time", "freeze_embeddings"} & set(plain)
    assert "lr" not in RunConfig.settings_in(tmp_path, given={"lr_finder": True})  # its folder
    with_vectors = RunConfig.settings_in(path, given={"embeddings": "glove.txt"})
    assert "embedding" not in with_vectors and with_vectors["freeze_embeddings"] is True
