"""A checkpoint's tensors: weights as safetensors (progress in their metadata), trainer state.

Loading never unpickles code: weights are safetensors, the trainer state is loaded with
weights_only=True. files.write_checkpoint writes them with config.json as one atomic set.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from lstmgen.errors import LstmgenError
from lstmgen.files import damaged, make_readable


def save_weights(model: torch.nn.Module, path: Path, progress: dict) -> None:
    """Weights as safetensors; the training progress rides along in its metadata."""
    save_model(model, str(path), metadata={"progress": json.dumps(progress)})
    make_readable(path)  # safetensors makes it 0600; the run's other files are 0644


def load_weights(model: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise LstmgenError(f"{path} is missing; the run has no saved weights yet (train it first)")
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise damaged(path, e) from None
    if missing or unexpected:
        raise LstmgenError(
            f"{path} does not match the run's config.json (tensors differ); "
            "the run directory is inconsistent"
        )


def save_trainer_state(state: dict, path: Path) -> None:
    torch.save(state, path)


def load_trainer_state(path: Path) -> dict:
    """Optimizer, schedule, RNG states and data cursor; tensors only (weights_only=True)."""
    if not path.is_file():
        raise LstmgenError(
            f"{path} is missing; this run cannot be resumed (its weights can still generate)"
        )
    try:
        with warnings.catch_warnings():  # torch warns of a foreign pickle before refusing it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise LstmgenError(
            f"{path} holds objects other than tensors, which lstmgen never writes and does not "
            "load; restore the run's own trainer_state.pt (the run cannot be resumed without it)"
        ) from None
    except Exception:  # torch raises several types for a truncated or foreign file
        raise LstmgenError(
            f"{path} is damaged (cut short, or not a PyTorch file); the run cannot be resumed"
        ) from None
    if not isinstance(state, dict) or not {"step", "optimizer", "rnn_state", "torch_rng"} <= set(
        state
    ):
        raise LstmgenError(f"{path} is not an lstmgen trainer state; the run cannot be resumed")
    if int(state.get("format", 1)) > 1:
        raise LstmgenError(f"{path} was written by a newer lstmgen; upgrade lstmgen to resume it")
    return state
