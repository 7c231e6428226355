"""Quality on held-out text: total nats over a token sequence, and bits per character."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from lstmgen.data.store import Documents
from lstmgen.model import LSTMLanguageModel
from lstmgen.threads import ThreadChooser


@torch.no_grad()
def evaluate_tokens(
    model: LSTMLanguageModel,
    tokens: np.ndarray,
    *,
    streams: int = 16,
    warmup: int = 256,
    chunk: int = 256,
    limit: int | None = None,
    shard: tuple[int, int] = (0, 1),
    unscored: tuple[int, ...] = (),
    documents: Documents | None = None,
) -> tuple[float, int]:
    """Total nats and count of predicted tokens over `tokens`, every position after the first
    scored once, except predictions of the `unscored` ids (control tokens: no text).

    The sequence is cut into `streams` ranges evaluated side by side; each range is
    preceded by up to `warmup` unscored tokens before it, so no prediction starts
    from a cold state except the very first ones of the text. With `limit` below the
    sequence's length, each range scores only its first limit/streams predictions: a
    sample spread evenly over the text. shard=(rank, ranks): this process scores every
    ranks-th range from rank on; the shards' sums add up to the whole. A conditioned model
    takes the documents of `tokens` (store.Documents): each token gets its document's conditions.
    """
    n_pred = len(tokens) - 1
    if n_pred < 1:
        return 0.0, 0
    device = next(model.parameters()).device
    inputs, targets, scored, begins = _layout(tokens, streams, warmup, limit)
    if unscored:
        scored &= ~np.isin(targets, unscored)
    rank, ranks = shard
    inputs, targets, scored = inputs[rank::ranks], targets[rank::ranks], scored[rank::ranks]
    if not len(inputs):  # more processes than ranges: nothing to score here
        return 0.0, 0
    given = _conditions_of(documents, begins[rank::ranks], inputs.shape[1], device)
    was_training = model.training
    model.eval()
    x, y, mask = (torch.from_numpy(a).to(device) for a in (inputs, targets, scored))
    total, state = 0.0, None
    for t in range(0, inputs.shape[1], chunk):
        c = None if given is None else given[:, t : t + chunk]
        logits, _, state = model(x[:, t : t + chunk], state, conditions=c)  # (S, c, V)
        nll = torch.nn.functional.cross_entropy(
            logits.float().transpose(1, 2), y[:, t : t + chunk], reduction="none"
        )  # (S, c)
        total += float((nll * mask[:, t : t + chunk]).sum())
    model.train(was_training)
    return total, int(scored.sum())


def _conditions_of(
    documents: Documents | None, begins: np.ndarray, width: int, device
) -> torch.Tensor | None:
    """The condition numbers (S, W, C) of laid-out rows: column j of row i is the input that
    predicts tokens[begin[i] + j + 1], and takes that token's document's conditions. Looked up
    for these positions only: a per-token array of a large held-out split would not fit."""
    if documents is None:
        return None
    positions = begins[:, None] + 1 + np.arange(width)
    return torch.from_numpy(documents.at(positions)).to(device)


def _layout(
    tokens: np.ndarray, streams: int, warmup: int, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, targets and scored flags (S, W) of the streams, and where each row starts in
    `tokens` (column j of row i predicts tokens[begin[i] + j + 1]); with `limit`, each row
    scores only the first limit/streams predictions of its range."""
    n_pred = len(tokens) - 1
    streams = max(1, min(streams, n_pred // max(warmup, 1)))
    stride = math.ceil(n_pred / streams)
    span = stride if limit is None or limit >= n_pred else max(1, limit // streams)
    width = warmup + span
    inputs = np.zeros((streams, width), dtype=np.int64)
    targets = np.zeros((streams, width), dtype=np.int64)
    scored = np.zeros((streams, width), dtype=bool)
    begins = np.zeros(streams, dtype=np.int64)
    for i in range(streams):
        # predictions of tokens[start+1 .. stop]
        start = i * stride
        stop = min(start + span, (i + 1) * stride, n_pred)
        begin = max(0, start - warmup)  # unscored context before the range
        length = stop - begin  # padding, if any, comes after the scored range: it cannot affect it
        inputs[i, :length] = tokens[begin:stop]
        targets[i, :length] = tokens[begin + 1 : stop + 1]
        scored[i, start - begin : length] = True
        begins[i] = begin
    return inputs, targets, scored, begins


@torch.no_grad()
def nats_by_position(
    model: LSTMLanguageModel,
    tokens: np.ndarray,
    *,
    streams: int = 16,
    warmup: int = 256,
    documents: Documents | None = None,
) -> np.ndarray:
    """Nats of each prediction over `tokens` (entry i: of tokens[i + 1]), laid out and warmed
    up as evaluate_tokens does, for totals over parts of the text (a condition's documents)."""
    out = np.zeros(max(len(tokens) - 1, 0), dtype=np.float64)
    if len(out) == 0:
        return out
    inputs, targets, scored, begins = _layout(tokens, streams, warmup)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x, y = (torch.from_numpy(a).to(device) for a in (inputs, targets))
    given = _conditions_of(documents, begins, inputs.shape[1], device)
    nll, state = [], None
    for t in range(0, inputs.shape[1], 256):
        c = None if given is None else given[:, t : t + 256]
        logits, _, state = model(x[:, t : t + 256], state, conditions=c)  # (S, c, V)
        nll.append(
            torch.nn.functional.cross_entropy(
                logits.float().transpose(1, 2), y[:, t : t + 256], reduction="none"
            ).cpu()
        )  # (S, c)
    model.train(was_training)
    values = torch.cat(nll, dim=1).double().numpy()  # (S, W)
    rows, columns = np.nonzero(scored)
    out[begins[rows] + columns] = values[rows, columns]
    return out


@torch.no_grad()
def document_nats(
    model: LSTMLanguageModel,
    documents: list[np.ndarray],
    conditions: np.ndarray | None,
    *,
    skip: int,
    streams: int = 64,
    chunk: int = 256,
) -> np.ndarray:
    """Total nats of each document's tokens after its first `skip` (what starts a document:
    the separator and the mark), each document scored on its own from a fresh state, under its
    row of conditions (N, C). Documents run side by side, sorted by length (little padding)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    # one thread against all cores, timed on these very steps: beside a busy process, two
    # spinning threads made classify 3x slower (BENCHMARKS.md, issue 22)
    threads = ThreadChooser(recheck_s=5.0, trial_steps=3)
    lengths = np.array([len(d) for d in documents])
    order = np.argsort(lengths, kind="stable")
    out = np.zeros(len(documents), dtype=np.float64)
    for first in range(0, len(order), streams):
        rows = order[first : first + streams]
        width = int(lengths[rows].max()) - 1  # predictions of the longest document
        if width < 1:
            continue
        inputs = np.zeros((len(rows), width), np.int64)
        targets = np.zeros((len(rows), width), np.int64)
        scored = np.zeros((len(rows), width), bool)
        for i, row in enumerate(rows):
            ids = documents[row]
            inputs[i, : len(ids) - 1], targets[i, : len(ids) - 1] = ids[:-1], ids[1:]
            scored[i, max(skip - 1, 0) : len(ids) - 1] = True
        x, y, mask = (torch.from_numpy(a).to(device) for a in (inputs, targets, scored))
        given = None if conditions is None else torch.from_numpy(conditions[rows]).to(device)
        total, state = torch.zeros(len(rows), dtype=torch.float64, device=device), None
        for t in range(0, width, chunk):
            threads.step_starts(time.perf_counter())
            logits, _, state = model(x[:, t : t + chunk], state, conditions=given)  # (S, c, V)
            nll = torch.nn.functional.cross_entropy(
                logits.float().transpose(1, 2), y[:, t : t + chunk], reduction="none"
            )  # (S, c)
            total += (nll * mask[:, t : t + chunk]).sum(1).double()
            threads.step_ends(time.perf_counter())
        out[rows] = total.cpu().numpy()
    model.train(was_training)
    return out
