"""Run directories: crash-safe checkpoints, and loading them back without unpickling code.

A checkpoint is a set of files (weights, trainer state, config) that must agree.
They are first written whole into `<dir>/.pending/`, then a COMMIT file is
written atomically, then they are moved into place. A crash before COMMIT leaves
the previous checkpoint untouched (the pending files are discarded); a crash
after it is finished by `recover()`, which every reader calls first. So at any
instant the directory holds the previous or the new checkpoint, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model

from .errors import LstmgenError
from .model import ADDED_LATER

RUN_FORMAT = 1
PENDING = ".pending"
COMMIT = "COMMIT"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_file(path)
    except OSError:  # some filesystems cannot fsync a directory; the renames are still atomic
        pass


def write_checkpoint(directory: Path, writers: dict[str, Callable[[Path], None]]) -> None:
    """Write files (name -> function that writes it) into directory as one atomic unit."""
    directory.mkdir(parents=True, exist_ok=True)
    recover(directory)
    pending = directory / PENDING
    shutil.rmtree(pending, ignore_errors=True)
    pending.mkdir()
    for name, write in writers.items():
        write(pending / name)
        _fsync_file(pending / name)
    commit_tmp = pending / (COMMIT + ".tmp")
    commit_tmp.write_text(json.dumps(sorted(writers)), encoding="utf-8")
    _fsync_file(commit_tmp)
    os.replace(commit_tmp, pending / COMMIT)  # the point of no return
    _fsync_dir(pending)
    recover(directory)


def recover(directory: Path, *, discard_uncommitted: bool = True) -> None:
    """Finish a committed checkpoint write, or discard an uncommitted one.

    Readers (generate, info) pass discard_uncommitted=False: the pending files may
    belong to a trainer that is writing them right now.
    """
    pending = directory / PENDING
    if not pending.is_dir():
        return
    commit = pending / COMMIT
    try:
        names = json.loads(commit.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        if discard_uncommitted:
            shutil.rmtree(pending, ignore_errors=True)
        return
    for name in names:
        try:
            os.replace(pending / name, directory / name)
        except FileNotFoundError:  # moved before a crash, or by another process
            pass
    _fsync_dir(directory)
    try:
        commit.unlink()
    except FileNotFoundError:
        pass
    shutil.rmtree(pending, ignore_errors=True)


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def save_weights(model: torch.nn.Module, path: Path, progress: dict) -> None:
    """Weights as safetensors; the training progress rides along in its metadata."""
    save_model(model, str(path), metadata={"progress": json.dumps(progress)})


def load_weights(model: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise LstmgenError(f"{path} is missing; the run has no saved weights yet (train it first)")
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise LstmgenError(f"{path} is damaged ({str(e).splitlines()[0]}); use the run's best/ copy or retrain") from None
    if missing or unexpected:
        raise LstmgenError(f"{path} does not match the run's config.json (tensors differ); the run directory is inconsistent")


def read_progress(path: Path) -> dict:
    """The progress dict stored with a weights file (step, epoch, tokens, best loss, ...)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {}).get("progress", "{}"))
    except (SafetensorError, OSError, json.JSONDecodeError, RuntimeError) as e:
        raise LstmgenError(f"{path} is damaged ({str(e).splitlines()[0]}); use the run's best/ copy or retrain") from None


def save_trainer_state(state: dict, path: Path) -> None:
    torch.save(state, path)


def load_trainer_state(path: Path) -> dict:
    """Optimizer, schedule, RNG states and data cursor; tensors only (weights_only=True)."""
    if not path.is_file():
        raise LstmgenError(f"{path} is missing; this run cannot be resumed (its weights can still generate)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a truncated or foreign file
        raise LstmgenError(f"{path} is damaged ({str(e).splitlines()[0][:120]}); the run cannot be resumed") from None
    if not isinstance(state, dict) or not {"step", "optimizer", "rnn_state", "torch_rng"} <= set(state):
        raise LstmgenError(f"{path} is not an lstmgen trainer state; the run cannot be resumed")
    if int(state.get("format", 1)) > 1:
        raise LstmgenError(f"{path} was written by a newer lstmgen; upgrade lstmgen to resume it")
    return state


def read_config(run_dir: Path, *, writer: bool = False) -> dict:
    """config.json of a run, checked for existence and format version."""
    if not run_dir.exists():
        raise LstmgenError(f"run directory {run_dir} does not exist; train one with: lstmgen train TEXT --out {run_dir}")
    if not run_dir.is_dir():
        raise LstmgenError(f"{run_dir} is a file, not a run directory")
    recover(run_dir, discard_uncommitted=writer)
    path = run_dir / "config.json"
    if not path.is_file():
        raise LstmgenError(f"{run_dir} is not a complete lstmgen run (config.json missing); train it again")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LstmgenError(f"{path} is damaged (not valid JSON); restore it or train again") from None
    if not isinstance(config, dict) or "model" not in config:
        raise LstmgenError(f"{path} is not an lstmgen config; train the run again")
    if not isinstance(config.get("format", 0), int):
        raise LstmgenError(f"{path} has an unreadable format version; train the run again")
    if config.get("format", 0) > RUN_FORMAT:
        raise LstmgenError(
            f"{run_dir} was written by a newer lstmgen (format {config['format']}, this one reads {RUN_FORMAT}); upgrade lstmgen"
        )
    config["model"] = {**ADDED_LATER, **config["model"]}  # older runs: the settings they trained with
    return config
