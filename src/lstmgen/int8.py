"""int8 inference on the CPU: an LSTM model's step as an onnxruntime graph of integer products.

onnxruntime multiplies uint8 by int8 matrices (MatMulInteger) with the CPU's int8 dot-product
instructions (AVX-512 VNNI, AVX-VNNI, AMX on x86; the dot-product extensions on ARM). The graph
is built here, in milliseconds, from the weights (no export, no file), as one model step:

- weights are int8 with one scale per output column (symmetric);
- each row's activations are quantized with its own scale (its largest magnitude / 127), so a
  row's numbers never depend on the rows beside it: integer sums are exact, the rest is
  elementwise, and a stream's logits are the same bits alone and in a batch of any size (the
  server's batch, tests/test_int8.py). onnxruntime's own `quantize_dynamic` takes one scale
  for the whole batch, so a request's text would change with its neighbours;
- layer 0's input projection stays a float32 lookup table (embedding @ W_ih + biases, one row
  per vocabulary entry), as in the numpy stepper; a conditioned model's condition part is one
  more float32 row per stream.

`Int8Module` has the model's forward and step (the prompt, evaluate and classify run through it
one position at a time); `Int8Stepper` is the sampler's and the server's single-step path.
torchao's int8 layers and `torch.ao.quantization.quantize_dynamic` were measured against it
(benchmarks/int8_inference.py).
"""

from __future__ import annotations

import os
import platform

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lstmgen.device import cpu_flags
from lstmgen.model import LSTMLanguageModel

OPSET = 17
# The flags of CPUs with int8 dot products; elsewhere int8 is emulated and slower than fp32.
INT8_FLAGS = {
    "x86_64": {"avx512_vnni", "avx_vnni", "amx_int8"},
    "amd64": {"avx512_vnni", "avx_vnni", "amx_int8"},
    "aarch64": {"asimddp", "i8mm"},
    "arm64": {"asimddp", "i8mm"},
}
# LSTMGEN_CPU_INT8=0: `--precision auto` keeps fp32 (the test suite sets it: the same text on
# every machine, whatever its CPU).
ENV = "LSTMGEN_CPU_INT8"


def int8_missing(module: LSTMLanguageModel | None = None, *, explicit: bool = False) -> str | None:
    """Why int8 cannot run here (this model, this CPU, onnxruntime), or None where it can.
    explicit: asked for by name, so the CPU's instructions and LSTMGEN_CPU_INT8 are not
    required (int8 then runs, only slower)."""
    if module is not None and module.config.cell != "lstm":
        return "int8 runs LSTM models; this one is a GRU"
    if not explicit:
        if os.environ.get(ENV, "1") == "0":
            return f"{ENV}=0"
        wanted = INT8_FLAGS.get(platform.machine().lower(), set())
        if not cpu_flags() & wanted:
            return "this CPU has no int8 dot-product instructions"
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return "int8 needs onnxruntime and onnx: pip install onnxruntime onnx"
    return None


def _quantized(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, N) float → int8 (K, N) and one scale per column (N,)."""
    scale = np.maximum(np.abs(w).max(0), 1e-12) / 127
    return np.clip(np.round(w / scale), -127, 127).astype(np.int8), scale.astype(np.float32)


class _Builder:
    """Nodes and initializers of one graph, with fresh names."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.inits, self.count = [], [], 0

    def const(self, array: np.ndarray) -> str:
        name = f"w{len(self.inits)}"
        self.inits.append(self.numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def op(self, kind: str, *inputs: str, **attributes) -> str:
        self.count += 1
        out = f"t{self.count}"
        self.nodes.append(self.helper.make_node(kind, list(inputs), [out], **attributes))
        return out

    def matmul(self, x: str, w: np.ndarray, bias: np.ndarray | None = None) -> str:
        """x (B, K) @ w (K, N) with int8 weights and each row's own uint8 scale."""
        q, scale = _quantized(w)
        size = self.op("ReduceMax", self.op("Abs", x), axes=[1], keepdims=1)  # (B, 1)
        step = self.op("Div", self.op("Max", size, self.const(np.float32(1e-12))), "k127")
        shifted = self.op("Add", self.op("Round", self.op("Div", x, step)), "k128")
        x8 = self.op("Cast", shifted, to=2)  # uint8, zero point 128
        product = self.op("MatMulInteger", x8, self.const(q), "zero")  # (B, N) int32, exact
        out = self.op(
            "Mul", self.op("Mul", self.op("Cast", product, to=1), step), self.const(scale)
        )
        return out if bias is None else self.op("Add", out, self.const(bias.astype(np.float32)))


def step_graph(weights: dict[str, np.ndarray], layers: int, hidden: int) -> bytes:
    """The serialized graph of one step: ids (B,), h and c (L, B, H), extra (B, 4H) → logits
    (B, V), h, c. weights: the fp32 numbers the numpy stepper takes (see Int8Module)."""
    g = _Builder()
    helper, H = g.helper, hidden
    g.inits += [
        g.numpy_helper.from_array(np.float32(127), "k127"),
        g.numpy_helper.from_array(np.float32(128), "k128"),
        g.numpy_helper.from_array(np.uint8(128), "zero"),
    ]
    table = g.const(weights["table"])
    below, hs, cs = None, [], []
    for l in range(layers):
        h = g.op("Gather", "h", g.const(np.int64(l)), axis=0)  # (B, H)
        c = g.op("Gather", "c", g.const(np.int64(l)), axis=0)
        if l == 0:
            lookup = g.op("Add", g.op("Gather", table, "ids", axis=0), "extra")
            gates = g.op("Add", g.matmul(h, weights["w0"]), lookup)
        else:
            joined = g.op("Concat", below, h, axis=1)
            gates = g.matmul(joined, weights[f"w{l}"], weights[f"b{l}"])
        names = [f"{gates}_{k}" for k in range(4)]  # PyTorch's order: i, f, g, o
        g.nodes.append(helper.make_node("Split", [gates], names, axis=1))
        i, f, o = (g.op("Sigmoid", names[k]) for k in (0, 1, 3))
        new_c = g.op("Add", g.op("Mul", f, c), g.op("Mul", i, g.op("Tanh", names[2])))
        below = g.op("Mul", o, g.op("Tanh", new_c))
        hs.append(g.op("Unsqueeze", below, g.const(np.array([0], np.int64))))
        cs.append(g.op("Unsqueeze", new_c, g.const(np.array([0], np.int64))))
    logits = g.matmul(below, weights["head"], weights["head_bias"])
    g.nodes += [
        helper.make_node("Identity", [logits], ["logits"]),
        helper.make_node("Concat", hs, ["h_out"], axis=0),
        helper.make_node("Concat", cs, ["c_out"], axis=0),
    ]
    f32, i64 = 1, 7
    inputs = [
        helper.make_tensor_value_info("ids", i64, ["B"]),
        helper.make_tensor_value_info("h", f32, [layers, "B", H]),
        helper.make_tensor_value_info("c", f32, [layers, "B", H]),
        helper.make_tensor_value_info("extra", f32, ["B", 4 * H]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", f32, ["B", weights["head"].shape[1]]),
        helper.make_tensor_value_info("h_out", f32, [layers, "B", H]),
        helper.make_tensor_value_info("c_out", f32, [layers, "B", H]),
    ]
    graph = helper.make_graph(g.nodes, "lstmgen_int8_step", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model.SerializeToString()


class Int8Module(nn.Module):
    """An LSTM language model whose every step runs as int8 in onnxruntime; forward and step
    as LSTMLanguageModel's (no training). The fp32 module stays inside (config, device)."""

    def __init__(self, module: LSTMLanguageModel, *, threads: int = 1):
        super().__init__()
        import onnxruntime as ort

        self.fp32 = module.float().cpu().eval()
        self.config = c = module.config
        self.layers, self.hidden = c.layers, c.hidden
        w = {n: p.detach().numpy() for n, p in module.named_parameters(remove_duplicate=False)}
        w_ih0, E = w["rnn.weight_ih_l0"], c.embedding
        bias0 = w["rnn.bias_ih_l0"] + w["rnn.bias_hh_l0"]
        graph = {
            "table": w["embed.weight"] @ w_ih0[:, :E].T + bias0,  # (V, 4H)
            "w0": w["rnn.weight_hh_l0"].T,
            "head": w["head.weight"].T,
            "head_bias": w["head.bias"],
        }
        for l in range(1, c.layers):
            graph[f"w{l}"] = np.concatenate(
                [w[f"rnn.weight_ih_l{l}"].T, w[f"rnn.weight_hh_l{l}"].T]
            )
            graph[f"b{l}"] = w[f"rnn.bias_ih_l{l}"] + w[f"rnn.bias_hh_l{l}"]
        width = c.condition_embedding
        self.condition_tables = [  # (values, 4H) per condition column
            (w[f"condition_embeds.{k}.weight"] @ w_ih0[:, E + k * width : E + (k + 1) * width].T)
            for k in range(len(c.conditions))
        ]
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(
            step_graph(graph, c.layers, c.hidden), options, providers=["CPUExecutionProvider"]
        )

    def condition_rows(self, conditions, streams: int) -> np.ndarray:
        """Each stream's conditions' part of layer 0's gates (streams, 4H); zeros without."""
        rows = np.zeros((streams, 4 * self.hidden), np.float32)
        if self.condition_tables:
            if conditions is None:
                raise ValueError("a conditioned model needs each stream's conditions")
            numbers = np.asarray(conditions, np.int64).reshape(streams, -1)
            for k, table in enumerate(self.condition_tables):
                rows += table[numbers[:, k]]
        return rows

    def run(self, ids: np.ndarray, h: np.ndarray, c: np.ndarray, extra: np.ndarray):
        """One step: ids (B,) and the state (L, B, H) → logits (B, V), h, c (numpy)."""
        feed = {"ids": np.ascontiguousarray(ids, np.int64), "h": h, "c": c, "extra": extra}
        return self.session.run(None, feed)

    def zero_state(self, streams: int) -> tuple[np.ndarray, np.ndarray]:
        zeros = np.zeros((self.layers, streams, self.hidden), np.float32)
        return zeros, zeros.copy()

    @torch.no_grad()
    def forward(self, idx, state=None, targets=None, conditions=None):
        """idx (B, T) → logits (B, T, V), mean cross-entropy given targets, new state; conditions
        (B, C) for all positions or (B, T, C) per position."""
        ids = idx.cpu().numpy()
        B, T = ids.shape
        h, c = self.zero_state(B) if state is None else (s.float().cpu().numpy() for s in state)
        h, c = np.ascontiguousarray(h), np.ascontiguousarray(c)
        numbers = None if conditions is None else conditions.cpu().numpy()
        per_position = numbers is not None and numbers.ndim == 3
        extra = None if per_position else self.condition_rows(numbers, B)
        out = np.empty((B, T, self.config.vocab_size), np.float32)
        for t in range(T):
            if per_position:
                extra = self.condition_rows(numbers[:, t], B)
            out[:, t], h, c = self.run(ids[:, t], h, c, extra)
        logits = torch.from_numpy(out)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1).cpu())
        return logits, loss, (torch.from_numpy(h), torch.from_numpy(c))

    @torch.no_grad()
    def step(self, token, state, conditions=None):
        logits, _, state = self.forward(token[:, None], state, conditions=conditions)
        return logits[:, 0], state


class Int8Stepper:
    """The sampler's and the server's step for an Int8Module: streams leave (`keep`) and join
    (`join`) between steps, as with the numpy stepper; each row's logits are its own."""

    def __init__(self, model: Int8Module, state, conditions: np.ndarray | None = None):
        self.model = model
        self.h, self.c = (np.ascontiguousarray(s.float().cpu().numpy()) for s in state)
        self.extra = model.condition_rows(conditions, self.h.shape[1])

    def step(self, ids: np.ndarray) -> np.ndarray:
        logits, self.h, self.c = self.model.run(ids, self.h, self.c, self.extra)
        return logits

    def keep(self, rows: np.ndarray) -> None:
        self.h, self.c = self.h[:, rows].copy(), self.c[:, rows].copy()
        self.extra = self.extra[rows]

    def join(self, state, conditions: np.ndarray | None = None) -> None:
        new_h, new_c = (s.float().cpu().numpy() for s in state)
        self.h = np.ascontiguousarray(np.concatenate([self.h, new_h], 1))
        self.c = np.ascontiguousarray(np.concatenate([self.c, new_c], 1))
        new = self.model.condition_rows(conditions, new_h.shape[1])
        self.extra = np.concatenate([self.extra, new])
