"""Truncated-BPTT batches: B contiguous streams read T steps at a time, state carried between
batches."""

from __future__ import annotations

import numpy as np
import torch

from lstmgen.data.store import Documents


class StreamBatches:
    """One epoch's batches over a token array.

    The array (after a random start offset in [0, T)) is cut into B equal
    contiguous streams; batch i holds steps [i*T, (i+1)*T) of every stream, so
    batch i+1 continues exactly where batch i stopped and the hidden state can
    be carried. Every position of the streams is a target once per epoch.

    With several processes (`ranks`), the array is cut into B x ranks streams, the global
    batch, and process `rank` reads its own B of them: disjoint, together all of them, and
    the same number of batches on every process.

    With `documents` (a conditioned store), each input position also gets the conditions of
    the document its target belongs to: the token before a document's mark already asks for
    that document.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        batch_size: int,
        seq_len: int,
        *,
        seed: int,
        epoch: int,
        rank: int = 0,
        ranks: int = 1,
        documents: Documents | None = None,
    ):
        self.batch_size, self.seq_len = batch_size, seq_len
        streams = batch_size * ranks  # the global batch
        slack = len(tokens) - 1 - streams * seq_len
        if slack < 0:
            # callers check with max_batch_size first
            raise ValueError("too few tokens for one batch")
        # offset depends only on (seed, epoch): resumable
        rng = np.random.default_rng([seed, epoch])
        offset = int(rng.integers(0, min(seq_len - 1, slack) + 1))
        stream_len = (len(tokens) - 1 - offset) // streams
        self.steps = stream_len // seq_len
        span = streams * stream_len
        # Views into the memmap: (B, stream_len); nothing is copied until a batch is read.
        own = slice(rank * batch_size, (rank + 1) * batch_size)
        self._inputs = tokens[offset : offset + span].reshape(streams, stream_len)[own]
        self._targets = tokens[offset + 1 : offset + 1 + span].reshape(streams, stream_len)[own]
        self.documents = documents
        # where each of this process's streams starts, as the position of its first target
        self._first_target = offset + 1 + np.arange(streams)[own] * stream_len

    def __len__(self) -> int:
        return self.steps

    def get(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `index`: inputs and next-token targets, each (B, T) int64."""
        cols = slice(index * self.seq_len, (index + 1) * self.seq_len)
        x = torch.from_numpy(self._inputs[:, cols].astype(np.int64))
        y = torch.from_numpy(self._targets[:, cols].astype(np.int64))
        return x, y

    def conditions(self, index: int) -> torch.Tensor | None:
        """The conditions (B, T, C) int64 of batch `index`'s inputs (None: unconditioned)."""
        if self.documents is None:
            return None
        start = index * self.seq_len
        positions = self._first_target[:, None] + np.arange(start, start + self.seq_len)  # (B, T)
        return torch.from_numpy(self.documents.at(positions))


def max_batch_size(num_tokens: int, seq_len: int) -> int:
    """The most streams of length seq_len that num_tokens can fill (0 if not even one)."""
    return max(0, (num_tokens - 1) // seq_len)
