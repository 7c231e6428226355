"""A run as an ONNX graph: token ids and the recurrent state in, logits and the new state out.

One graph serves the prompt and the single steps: its batch and steps axes are dynamic. A
conditioned model takes each stream's condition numbers (batch, columns) as one more input.
`OnnxModel` runs such a graph with onnxruntime (Python), for the parity tests and benchmarks.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from lstmgen.errors import LstmgenError
from lstmgen.model import LSTMLanguageModel

OPSET = 17


def input_names(module: LSTMLanguageModel) -> list[str]:
    """The graph's inputs: ids (B, T), h0 (L, B, H), c0 for an LSTM, conditions (B, C)."""
    names = ["ids", "h0"] + (["c0"] if module.config.cell == "lstm" else [])
    return names + (["conditions"] if module.condition_embeds else [])


def output_names(module: LSTMLanguageModel) -> list[str]:
    return ["logits", "h"] + (["c"] if module.config.cell == "lstm" else [])


class _Graph(nn.Module):
    """The model with its state as plain tensors, as the exporter wants them."""

    def __init__(self, module: LSTMLanguageModel):
        super().__init__()
        self.module = module
        self.lstm = module.config.cell == "lstm"

    def forward(self, ids, h0, *rest):
        c0 = rest[0] if self.lstm else None
        conditions = rest[-1] if self.module.condition_embeds else None
        state = (h0, c0) if self.lstm else h0
        logits, _, state = self.module(ids, state, conditions=conditions)  # (B, T, V)
        return (logits, *state) if self.lstm else (logits, state)


def example_inputs(module: LSTMLanguageModel, batch: int = 2, steps: int = 3) -> tuple:
    c = module.config
    ids = torch.ones(batch, steps, dtype=torch.int64)
    zeros = torch.zeros(c.layers, batch, c.hidden)
    inputs = [ids, zeros] + ([zeros.clone()] if c.cell == "lstm" else [])
    if module.condition_embeds:
        inputs.append(torch.zeros(batch, len(module.condition_embeds), dtype=torch.int64))
    return tuple(inputs)


def write_onnx(module: LSTMLanguageModel, path: Path) -> None:
    """Write the module (on the CPU, in fp32, eval mode) as an ONNX graph and check it."""
    import onnx

    module = module.float().cpu().eval()
    names, outputs = input_names(module), output_names(module)
    axes = {"ids": {0: "batch", 1: "steps"}, "logits": {0: "batch", 1: "steps"}}
    for name in ("h0", "c0", "h", "c"):
        axes[name] = {1: "batch"}
    axes["conditions"] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        # its advice (states as inputs, tracer notes on shape checks) is followed already
        warnings.simplefilter("ignore")
        # The TorchScript exporter: nn.LSTM with a dynamic batch and steps becomes one ONNX
        # LSTM node per layer.
        torch.onnx.export(
            _Graph(module),
            example_inputs(module),
            str(path),
            input_names=names,
            output_names=outputs,
            dynamic_axes={k: v for k, v in axes.items() if k in names + outputs},
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))


def quantize_int8(source: Path, target: Path) -> None:
    """onnxruntime's dynamic int8 quantization: int8 weights, activations quantized per call."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # its advice to pre-process is for convolutional graphs
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)


def session(path: Path, threads: int | None = None):
    """An onnxruntime CPU session for the graph at path."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise LstmgenError(
            "running ONNX models needs onnxruntime: pip install 'lstmgen[export]'"
        ) from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxModel:
    """An exported graph run by onnxruntime: run(ids, state, conditions) → logits, state."""

    def __init__(self, path: Path, *, threads: int | None = None):
        self.session = session(path, threads)
        self.inputs = [i.name for i in self.session.get_inputs()]
        shape = self.session.get_inputs()[1].shape  # h0: (layers, batch, hidden)
        self.layers, self.hidden = int(shape[0]), int(shape[2])
        self.lstm = "c0" in self.inputs

    def zero_state(self, batch: int) -> list[np.ndarray]:
        zeros = np.zeros((self.layers, batch, self.hidden), np.float32)
        return [zeros, zeros.copy()] if self.lstm else [zeros]

    def run(
        self, ids: np.ndarray, state: list[np.ndarray], conditions: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """ids (B, T) → logits (B, T, V) and the state after them."""
        feed = {"ids": np.ascontiguousarray(ids, dtype=np.int64), "h0": state[0]}
        if self.lstm:
            feed["c0"] = state[1]
        if "conditions" in self.inputs:
            if conditions is None:
                raise LstmgenError("this model is conditioned: give each stream's conditions")
            feed["conditions"] = np.ascontiguousarray(conditions, dtype=np.int64)
        logits, *state = self.session.run(None, feed)
        return logits, state
