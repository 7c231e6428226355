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
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model

from lstmgen.config import ModelConfig
from lstmgen.config.memory import machine_memory_bytes, refuse_loading_beyond
from lstmgen.errors import LstmgenError
from lstmgen.files import damaged, make_readable

SAVED_DTYPE = "F32"  # safetensors' name of the dtype every run's weights are saved in


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


def expected_shapes(model: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in the weights of the model a config describes (arithmetic only:
    nothing is allocated). With tied weights the output layer's weight is the embedding's."""
    gates = (4 if model.cell == "lstm" else 3) * model.hidden
    shapes = {"embed.weight": (model.vocab_size, model.embedding)}
    for k, values in enumerate(model.conditions):
        shapes[f"condition_embeds.{k}.weight"] = (values, model.condition_embedding)
    for layer in range(model.layers):
        inputs = model.input_size if layer == 0 else model.hidden
        shapes[f"rnn.weight_ih_l{layer}"] = (gates, inputs)
        shapes[f"rnn.weight_hh_l{layer}"] = (gates, model.hidden)
        shapes[f"rnn.bias_ih_l{layer}"] = (gates,)
        shapes[f"rnn.bias_hh_l{layer}"] = (gates,)
    if not model.tie_weights:
        shapes["head.weight"] = (model.vocab_size, model.hidden)
    shapes["head.bias"] = (model.vocab_size,)
    return shapes


def check_weights(model: ModelConfig, path: Path, *, config_name: str = "config.json") -> None:
    """Refuse, before the model is built, weights whose header disagrees with the config's
    shapes, and a model too big for this machine's memory (a damaged config.json must not
    reach an allocation of 10^15 bytes)."""
    if not path.is_file():
        raise LstmgenError(f"{path} is missing; the run has no saved weights yet (train it first)")
    try:
        with safe_open(str(path), framework="numpy") as f:
            names = f.keys()  # safe_open is not iterable
            found = {name: tuple(f.get_slice(name).get_shape()) for name in names}
            dtypes = {name: f.get_slice(name).get_dtype() for name in names}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise damaged(path, e) from None
    layers = sum(name.startswith("rnn.weight_hh_l") for name in found)
    if model.layers != layers:  # before expected_shapes, which lists every layer's tensors
        raise LstmgenError(
            f"{config_name} says model.layers {model.layers}, but {path} holds {layers}; one "
            "of them is damaged: restore it or train again"
        )
    expected = expected_shapes(model)
    if model.tie_weights and "embed.weight" not in found:  # either name of the shared tensor
        expected["head.weight"] = expected.pop("embed.weight")
    for name in [*expected, *sorted(found.keys() - expected.keys())]:  # in the model's order
        want, have = expected.get(name), found.get(name)
        if want == have:
            continue
        said = "no such tensor" if want is None else f"shape {_shape(want)}"
        held = "does not hold it" if have is None else f"holds {_shape(have)}"
        raise LstmgenError(
            f"{config_name} and {path} disagree on {name} ({config_name}: {said}; the weights "
            f"file {held}); one of them is damaged: restore it or train again"
        )
    wrong = sorted(name for name, dtype in dtypes.items() if dtype != SAVED_DTYPE)
    if wrong:  # re-saved as integers, the weights would load, cast, and score nonsense
        raise LstmgenError(
            f"{path} holds {wrong[0]} as {dtypes[wrong[0]]}, but lstmgen saves weights as "
            f"{SAVED_DTYPE} (float32); the file was changed or damaged: restore it or train again"
        )
    refuse_loading_beyond(model, config_name, available=machine_memory_bytes())


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


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
