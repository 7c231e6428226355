"""evaluate in a stream: held-out text read, tokenized and scored piece by piece, in memory that
does not grow with the text (issue 33: it held ~28 bytes a character).

The numbers are today's to within float rounding. A model without conditions scores the text
as metrics.evaluate_tokens lays it out (16 ranges side by side, each warmed up on the 256
tokens before it): the token ids go to a temporary file (4 bytes a token, on disk) and each
step reads its columns from there. A conditioned model scores the text as one document, as
metrics.document_nats does, its state carried from chunk to chunk.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from lstmgen.config import bits_per_char
from lstmgen.errors import LstmgenError, warn
from lstmgen.threads import ThreadChooser

CHUNK_CHARS = 1 << 20  # characters tokenized at a time
STEPS = 256  # time steps the model runs at a time, as evaluate_tokens and document_nats do


def text_chunks(pieces: Iterable[str], chunk_chars: int, anywhere: bool) -> Iterator[str]:
    """The text of pieces in chunks of about chunk_chars, each cut where tokenizing the chunks
    one by one gives the ids of the whole: anywhere for characters, else after a line break
    that a non-space follows (no word, space run or merge spans it)."""
    buffer = ""
    for piece in pieces:
        buffer += piece
        done = 0  # of buffer, yielded
        while len(buffer) - done >= chunk_chars:
            near = done + chunk_chars
            cut = near if anywhere else _cut(buffer, done, near)
            if cut <= done:
                break  # one long line: read on until it ends
            yield buffer[done:cut]
            done = cut
        buffer = buffer[done:]
    if buffer:
        yield buffer


def _cut(text: str, start: int, near: int) -> int:
    """The last position after a '\\n' followed by a non-space, in text[start:near + 1]
    (start: none)."""
    at = text.rfind("\n", start, near)
    while at >= 0 and (at + 1 >= len(text) or text[at + 1].isspace()):
        at = text.rfind("\n", start, at)
    return max(at + 1, start)


class Counts:
    """What evaluate reports of the text besides its loss: characters, tokens, unknown ones."""

    def __init__(self, tokenizer):
        self.tokenizer, self.characters, self.tokens = tokenizer, 0, 0
        self.unknown_tokens = self.unknown_characters = 0
        self.unknown_seen: dict[str, None] = {}  # the first few, in order

    def ids(self, chunk: str) -> np.ndarray:
        ids = self.tokenizer.encode(chunk)
        self.characters += len(chunk)
        self.tokens += len(ids)
        unknown = int((ids == self.tokenizer.unknown_id).sum())
        if unknown:
            self.unknown_tokens += unknown
            self.unknown_characters += int(self.tokenizer.unknown_characters(chunk))
            if len(self.unknown_seen) <= 10:
                self.unknown_seen.update(dict.fromkeys(self.tokenizer.unknown_words(chunk)))
        return ids

    def warn_unknown(self, what: str) -> None:
        if not self.unknown_tokens:
            return
        unit = "character" if self.tokenizer.kind == "char" else "word"
        seen = list(self.unknown_seen)
        shown = ("" if unit == "character" else " ").join(seen[:10]) + (
            "…" if len(seen) > 10 else ""
        )
        warn(
            f"{what} has {self.unknown_tokens} {unit}(s) not in this model's "
            f"{self.tokenizer.vocab_size - 1}-{unit} vocabulary ({shown!r}); "
            f"they were mapped to the unknown {unit}"
        )


def evaluate_pieces(
    module, tokenizer, conditions, pieces: Iterable[str], *, condition=None, chunk_chars=CHUNK_CHARS
) -> dict:
    """Model.evaluate's result for the text the pieces make, read once, piece by piece."""
    counts = Counts(tokenizer)
    chunks = text_chunks(pieces, chunk_chars, anywhere=tokenizer.kind == "char")
    if conditions is None:
        with tempfile.TemporaryFile(prefix="lstmgen-evaluate-") as ids_file:
            for chunk in chunks:
                counts.ids(chunk).astype(np.int32).tofile(ids_file)
            counts.warn_unknown("the evaluation text")
            _at_least_two(counts)
            ids_file.flush()
            nats, count = _ranges_nats(module, ids_file, counts.tokens)
    else:
        nats = _document_nats(module, tokenizer, conditions, map(counts.ids, chunks), condition)
        counts.warn_unknown("the evaluation text")
        _at_least_two(counts)
        count = counts.tokens
    per_token = float(nats) / int(count)
    bits = float(bits_per_char(per_token, counts.tokens / counts.characters))
    return {  # plain floats and ints: json.dumps takes it as it is
        "bits_per_char": bits,
        "nats_per_char": bits * math.log(2),
        "nats_per_token": per_token,
        "perplexity": math.exp(min(per_token, 700.0)),  # per token
        "characters": counts.characters,
        "tokens": counts.tokens,
        "level": tokenizer.kind,
        "unknown_tokens": counts.unknown_tokens,
        "unknown_characters": counts.unknown_characters,
    }


def chooser() -> ThreadChooser:
    """One thread against all cores, timed on these very steps, as metrics.document_nats does:
    beside a busy process, spinning threads made scoring many times slower."""
    return ThreadChooser(recheck_s=5.0, trial_steps=3)


def _at_least_two(counts: Counts) -> None:
    if counts.tokens < 2:
        raise LstmgenError("the evaluation text needs at least 2 tokens")


@torch.no_grad()
def _ranges_nats(module, ids_file, n: int, streams: int = 16, warmup: int = 256):
    """evaluate_tokens(module, ids) of the n ids in ids_file (int32), reading each step's
    columns of its layout (metrics._layout) from the file: (total nats, predictions)."""
    n_pred = n - 1
    streams = max(1, min(streams, n_pred // max(warmup, 1)))
    stride = math.ceil(n_pred / streams)
    width = warmup + stride
    starts = np.arange(streams) * stride
    stops = np.minimum(np.minimum(starts + stride, (np.arange(streams) + 1) * stride), n_pred)
    begins = np.maximum(0, starts - warmup)
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    total, state, scored_count = 0.0, None, 0
    threads = chooser()
    for t in range(0, width, STEPS):
        threads.step_starts(time.perf_counter())
        c = min(STEPS, width - t)
        inputs = np.zeros((streams, c), np.int64)
        targets = np.zeros((streams, c), np.int64)
        scored = np.zeros((streams, c), bool)
        for i in range(streams):
            length = int(stops[i] - begins[i])  # this row's columns; padding after them
            have = min(c, length - t)
            if have <= 0:
                continue
            ids_file.seek(4 * int(begins[i] + t))
            ids = np.fromfile(ids_file, np.int32, count=have + 1).astype(np.int64)
            inputs[i, :have], targets[i, :have] = ids[:have], ids[1 : have + 1]
            first = int(starts[i] - begins[i]) - t  # the first scored column, in this step
            scored[i, max(first, 0) : have] = True
        x, y, mask = (torch.from_numpy(a).to(device) for a in (inputs, targets, scored))
        logits, _, state = module(x, state)  # (S, c, V)
        nll = torch.nn.functional.cross_entropy(
            logits.float().transpose(1, 2), y, reduction="none"
        )  # (S, c)
        total += float((nll * mask).sum())
        scored_count += int(scored.sum())
        threads.step_ends(time.perf_counter())
    module.train(was_training)
    return total, scored_count


@torch.no_grad()
def _document_nats(module, tokenizer, conditions, text_ids: Iterator[np.ndarray], condition):
    """Nats of the text's tokens as one document, as Model scored it: under the conditions
    asked for (the other columns at their most common value), or the mixture over the first
    column's values weighted by their training share (its marginal likelihood)."""
    asked = conditions.asked(condition)
    row = np.array([int(np.argmax(c.prior)) for c in conditions.columns])
    if asked:
        for k, value in asked.items():
            row[k] = value
        rows = row[None]
    else:  # document i under value i of the first column, as Model.classify scores it
        rows = np.repeat(row[None], len(conditions.columns[0].values), axis=0)
        rows[:, 0] = np.arange(len(rows))
    start = tokenizer.encode(conditions.separator)
    skip = len(start) + 1  # the separator and the mark are not scored
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    given = torch.from_numpy(rows).to(device)
    total = torch.zeros(len(rows), dtype=torch.float64, device=device)
    state, position = None, 0  # position: of the next prediction in the document
    threads = chooser()
    pending = np.concatenate([start, [tokenizer.document_id]]).astype(np.int64)

    def step(ids: np.ndarray) -> None:  # predictions of ids[1:] from ids[:-1]
        nonlocal state, position, total
        threads.step_starts(time.perf_counter())
        c = len(ids) - 1
        x = torch.from_numpy(np.tile(ids[:-1], (len(rows), 1))).to(device)
        y = torch.from_numpy(np.tile(ids[1:], (len(rows), 1))).to(device)
        mask = torch.from_numpy(np.arange(position, position + c) >= skip - 1).to(device)
        logits, _, state = module(x, state, conditions=given)  # (R, c, V)
        nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), y, reduction="none")
        total += (nll * mask).sum(1).double()
        position += c
        threads.step_ends(time.perf_counter())

    for ids in text_ids:
        pending = np.concatenate([pending, ids])
        while len(pending) > STEPS:
            step(pending[: STEPS + 1])
            pending = pending[STEPS:]
    if len(pending) > 1:
        step(pending)
    module.train(was_training)
    nats = total.cpu().numpy()
    if asked:
        return float(nats[0])
    prior = np.log(np.maximum(np.array(conditions.columns[0].prior), 1e-12))
    joint = -nats + prior
    return float(-(joint.max() + np.log(np.exp(joint - joint.max()).sum())))
