"""Hostile input and faults of the machine (issue 33, items 2 to 8): weights of the wrong type,
a full disk, a closed pipe, giant cells, damaged web manifests, memory that must not grow with
the input. Each is told in one line (exit 2) or handled, never a traceback or a silent drop."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_hostile import refused

from conftest import TINY, make_text


@pytest.fixture
def run(trained_run, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(trained_run, target)
    return target


# ----- item 3: weights re-saved as another dtype ----------------------------------------------
def test_weights_resaved_as_int32_are_refused_at_load(run, capsys):
    from safetensors.torch import load_file, save_file

    for folder in (run, run / "best"):
        weights = folder / "model.safetensors"
        if weights.is_file():
            tensors = load_file(str(weights))
            save_file({k: (v * 1000).int() for k, v in tensors.items()}, str(weights))
    for command in (
        ["evaluate", run, run / "samples.md"],
        ["export", run, "--out", run.parent / "exported"],
    ):
        refused(command, capsys, "model.safetensors", "I32", "F32", "restore it or train again")
    assert not (run.parent / "exported").exists()
