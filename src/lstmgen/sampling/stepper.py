"""One token per stream per call: the recurrent inference path used for generation.

Training runs whole sequences through `nn.LSTM`; generation cannot, because each
character depends on the one sampled before it. Calling `nn.LSTM` once per
character pays PyTorch's per-call cost for every layer of every character (a few
hundred characters per second on a 2-core CPU). `NumpyLSTMStepper` instead keeps
the weights as plain float32 matrices laid out for one matrix-vector product per
layer and step, and reuses preallocated buffers:

- layer 0's input projection is a lookup table: embedding @ W_ih + biases, one
  row per vocabulary entry, so the first layer only multiplies its hidden state;
  a conditioned model's condition embeddings are constant per stream, so their part of
  the projection is one more row per stream, added at every step;
- the other layers multiply [input, h, 1] by one fused matrix [W_ih; W_hh; b];
- gates are reordered to (i, f, o, g) with the sigmoid rows negated, so one exp,
  one add and one reciprocal make all three sigmoid gates;
- the output layer reads [h, 1] straight out of the top layer's buffer.

It gives the same probabilities as the `nn.LSTM` forward up to float rounding
(tests check 1e-5). GPUs, GRU cells and batches of 32 streams or more (where
the work is large matrix products that PyTorch does as fast) use `TorchStepper`,
which calls the model's own `step`.

Both let streams leave (`keep`) and join (`join`) between steps, for a server's running batch;
each stream brings its condition numbers (C,) where the model is conditioned.
A row's numbers then should not depend on which rows it is computed with: OpenBLAS multiplies
a block of rows (gemm) in the same order at every row count from 2 on, but a vocabulary that is
not a multiple of 16 columns in another order, so `exact_rows=True` pads the output layer to 16k
columns; each row's logits are then the same bits at every batch size from 2 on
(tests/test_serve.py). A lone row takes generate's matrix-vector path (gemv) instead: padding it
to 2 rows made the server's lone request cost 2-10x generate's matrix work (BENCHMARKS.md,
serve). gemv rounds in another order, so a lone row's logits match a batched row's to ~1e-6, not
in every bit; the sampled text is the same unless a draw falls within that of a boundary, and
tests/test_serve.py checks seeded texts alone and in batches of 2, 7 and 64.
"""

from __future__ import annotations

import numpy as np
import torch

from lstmgen.int8 import Int8Module, Int8Stepper
from lstmgen.model import LSTMLanguageModel, State


class TorchStepper:
    """Generic path: the model's own `step` on its device; logits come back as numpy."""

    def __init__(self, model: LSTMLanguageModel, state: State, conditions: np.ndarray | None):
        self.model, self.state = model, state
        self.device = next(model.parameters()).device
        self.conditions = self._tensor(conditions)  # (B, C) or None

    def _tensor(self, conditions: np.ndarray | None) -> torch.Tensor | None:
        if conditions is None:
            return None
        return torch.as_tensor(np.asarray(conditions, np.int64), device=self.device)

    @torch.no_grad()
    def step(self, ids: np.ndarray) -> np.ndarray:
        tokens = torch.from_numpy(ids).to(self.device)
        logits, self.state = self.model.step(tokens, self.state, self.conditions)
        return logits.float().cpu().numpy()

    def keep(self, rows: np.ndarray) -> None:
        """Continue only the streams at these row positions."""
        index = torch.from_numpy(rows).to(self.device)
        if isinstance(self.state, tuple):
            self.state = tuple(s.index_select(1, index) for s in self.state)
        else:
            self.state = self.state.index_select(1, index)
        if self.conditions is not None:
            self.conditions = self.conditions.index_select(0, index)

    def join(self, state: State, conditions: np.ndarray | None = None) -> None:
        """Add streams (their states (L, n, H) and conditions (n, C)) after the current ones."""
        if isinstance(self.state, tuple):
            self.state = tuple(torch.cat([a, b], 1) for a, b in zip(self.state, state, strict=True))
        else:
            self.state = torch.cat([self.state, state], 1)
        if self.conditions is not None:
            self.conditions = torch.cat([self.conditions, self._tensor(conditions)])


def _reorder(w: np.ndarray, hidden: int) -> np.ndarray:
    """Columns in PyTorch's gate order (i, f, g, o) → (i, f, o, g), sigmoid columns negated."""
    i, f, g, o = (w[..., k * hidden : (k + 1) * hidden] for k in range(4))
    return np.ascontiguousarray(np.concatenate([-i, -f, -o, g], axis=-1), dtype=np.float32)


class NumpyLSTMStepper:
    """The fast CPU path for LSTM models (see the module docstring)."""

    def __init__(
        self,
        model: LSTMLanguageModel,
        state: tuple[torch.Tensor, torch.Tensor],
        conditions: np.ndarray | None = None,
        *,
        exact_rows: bool = False,
    ):
        rnn, H, E = model.rnn, model.config.hidden, model.config.embedding
        self.layers, self.hidden = model.config.layers, H
        # remove_duplicate=False: with tied weights head.weight is the embedding, and must still
        # be found.
        weights = {
            name: p.detach().float().cpu().numpy()
            for name, p in model.named_parameters(remove_duplicate=False)
        }
        bias0 = weights["rnn.bias_ih_l0"] + weights["rnn.bias_hh_l0"]
        w_ih = weights["rnn.weight_ih_l0"]  # (4H, E + C·E_c): the token's columns, then each
        self.table = _reorder(weights["embed.weight"] @ w_ih[:, :E].T + bias0, H)  # (V, 4H)
        width = model.config.condition_embedding
        self.condition_tables = [  # (values, 4H) per condition column
            _reorder(
                weights[f"condition_embeds.{k}.weight"]
                @ w_ih[:, E + k * width : E + (k + 1) * width].T,
                H,
            )
            for k in range(len(model.config.conditions))
        ]
        # layer 0's buffer ends in a 1 too; its bias is in the table
        zero_row = np.zeros((1, 4 * H), np.float32)
        self.w0 = _reorder(
            np.concatenate([weights["rnn.weight_hh_l0"].T, zero_row]), H
        )  # (H + 1, 4H)
        self.w = [  # (2H + 1, 4H) per upper layer: rows for [input, h, 1]
            _reorder(
                np.concatenate(
                    [
                        weights[f"rnn.weight_ih_l{l}"].T,
                        weights[f"rnn.weight_hh_l{l}"].T,
                        (weights[f"rnn.bias_ih_l{l}"] + weights[f"rnn.bias_hh_l{l}"])[None],
                    ]
                ),
                H,
            )
            for l in range(1, self.layers)
        ]
        head = np.concatenate([weights["head.weight"].T, weights["head.bias"][None]])  # (H + 1, V)
        self.vocab = head.shape[1]
        self.head_one = np.ascontiguousarray(head, dtype=np.float32)  # a lone row: gemv
        self.head_rows = self.head_one  # a block of rows: gemm
        if exact_rows:  # zero columns up to a multiple of 16 (see the module docstring)
            self.head_rows = np.pad(self.head_one, ((0, 0), (0, -self.vocab % 16)))
        assert rnn.bias and not rnn.bidirectional and getattr(rnn, "proj_size", 0) == 0
        h, c = (s.detach().float().cpu().numpy() for s in state)  # (L, B, H)
        self.streams = 0
        self._allocate(h, c, self._condition_rows(conditions, h.shape[1]))

    def _condition_rows(self, conditions: np.ndarray | None, streams: int) -> np.ndarray | None:
        """Each stream's conditions' part of layer 0's gates (streams, 4H), or None."""
        if not self.condition_tables:
            return None
        if conditions is None:
            raise ValueError("a conditioned model needs each stream's conditions")
        conditions = np.asarray(conditions, np.int64).reshape(streams, -1)
        rows = np.zeros((streams, self.table.shape[1]), np.float32)
        for k, table in enumerate(self.condition_tables):
            rows += table[conditions[:, k]]
        return rows

    def _allocate(self, h: np.ndarray, c: np.ndarray, extra: np.ndarray | None) -> None:
        self.streams = h.shape[1]
        self.head = self.head_one if self.streams == 1 else self.head_rows
        self.extra = extra  # (B, 4H): the conditions' part of layer 0's gates, or None
        L, B, H = h.shape
        # Each layer's buffer holds [input from below | own h | 1]; layer 0's only [own h | 1].
        self.buf = [np.ones((B, H + 1), np.float32)] + [
            np.ones((B, 2 * H + 1), np.float32) for _ in range(1, L)
        ]
        self.own = [self.buf[0][:, :H]] + [b[:, H : 2 * H] for b in self.buf[1:]]
        for l in range(L):
            self.own[l][...] = h[l]
            if l + 1 < L:
                self.buf[l + 1][:, :H] = h[l]
        self.c = np.array(c, dtype=np.float32)  # a copy: the caller's state stays as it was
        g = self.gates = np.empty((B, 4 * H), np.float32)
        self.rows = np.empty((B, 4 * H), np.float32)
        self.tmp = np.empty((B, H), np.float32)
        self.logits = np.empty((B, self.head.shape[1]), np.float32)
        # Views made once: slicing costs as much as the arithmetic at batch size 1.
        self.views = (g[:, : 3 * H], g[:, 3 * H :], g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H])
        self.plan = [
            (
                self.buf[l],
                self.w0 if l == 0 else self.w[l - 1],
                self.c[l],
                self.own[l],
                self.buf[l + 1][:, :H] if l + 1 < L else None,
            )
            for l in range(L)
        ]
        # [h | 1], read by the output layer
        self.top = self.buf[0] if L == 1 else self.buf[-1][:, H:]

    def step(self, ids: np.ndarray) -> np.ndarray:
        """ids (B,) → next-token logits (B, V). The returned array is reused by the next call."""
        g, tmp = self.gates, self.tmp
        sig, cand, i, f, o = self.views
        for l, (x, w, c, h, above) in enumerate(self.plan):
            np.matmul(x, w, out=g)
            if l == 0:
                np.take(self.table, ids, axis=0, out=self.rows)
                g += self.rows
                if self.extra is not None:
                    g += self.extra
            np.minimum(sig, 80.0, out=sig)  # keeps exp finite; sigmoid(-80) is 0 in float32 anyway
            np.exp(sig, out=sig)
            sig += 1.0
            np.reciprocal(sig, out=sig)  # i, f, o = sigmoid(x) = 1 / (1 + exp(-x))
            np.tanh(cand, out=cand)
            cand *= i
            c *= f
            c += cand  # c = f * c + i * g
            np.tanh(c, out=tmp)
            np.multiply(o, tmp, out=h)  # h = o * tanh(c)
            if above is not None:
                above[...] = h
        logits = np.matmul(self.top, self.head, out=self.logits)
        return logits[: self.streams, : self.vocab]

    def keep(self, rows: np.ndarray) -> None:
        """Continue only the streams at these row positions."""
        h = np.stack([own[rows] for own in self.own])
        extra = None if self.extra is None else self.extra[rows]
        self._allocate(h, self.c[:, rows], extra)

    def join(
        self, state: tuple[torch.Tensor, torch.Tensor], conditions: np.ndarray | None = None
    ) -> None:
        """Add streams (their states (L, n, H) and conditions (n, C)) after the current ones."""
        live = np.arange(self.streams)
        h = np.stack([own[live] for own in self.own])
        new_h, new_c = (s.detach().float().cpu().numpy() for s in state)
        extra = None
        if self.extra is not None:
            new = self._condition_rows(conditions, new_h.shape[1])
            extra = np.concatenate([self.extra[live], new])
        self._allocate(
            np.concatenate([h, new_h], 1), np.concatenate([self.c[:, live], new_c], 1), extra
        )


def make_stepper(
    model: LSTMLanguageModel,
    state: State,
    conditions: np.ndarray | None = None,
    *,
    exact_rows: bool = False,
) -> TorchStepper | NumpyLSTMStepper | Int8Stepper:
    """The fastest path this model and device allow, for streams with these states (and
    condition numbers (B, C) where the model is conditioned); with exact_rows (a batch whose
    rows come and go), the numpy path at every batch size, its output layer padded so that
    rows do not affect each other."""
    if isinstance(model, Int8Module):  # int8: every row its own at every batch size
        return Int8Stepper(model, state, conditions)
    on_cpu = next(model.parameters()).device.type == "cpu"
    streams = (state[0] if isinstance(state, tuple) else state).shape[1]
    # From about 32 streams on, the work is big matrix products, where PyTorch's are as fast or
    # faster.
    float32 = next(model.parameters()).dtype == torch.float32  # bf16: PyTorch's own step
    numpy_fits = on_cpu and float32 and model.config.cell == "lstm" and isinstance(state, tuple)
    if numpy_fits and (exact_rows or streams < 32):
        return NumpyLSTMStepper(model, state, conditions, exact_rows=exact_rows)
    return TorchStepper(model, state, conditions)
