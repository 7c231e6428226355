import numpy as np
import torch

from lstmgen.training.batches import StreamBatches, max_batch_size


def test_batches_continue_each_stream_and_shift_targets():
    tokens = np.arange(1000, dtype=np.uint16)
    batches = StreamBatches(tokens, batch_size=4, seq_len=10, seed=0, epoch=0)
    x0, y0 = batches.get(0)
    x1, _ = batches.get(1)
    assert x0.shape == (4, 10) and x0.dtype == torch.int64
    assert torch.equal(y0, x0 + 1)  # every position predicts the next token
    assert torch.equal(x1[:, 0], x0[:, -1] + 1)  # batch i+1 continues batch i in every stream
    seen = torch.cat([batches.get(i)[1] for i in range(len(batches))], dim=1).flatten()
    assert len(set(seen.tolist())) == len(seen)  # no target is used twice in an epoch


def test_offset_depends_only_on_seed_and_epoch():
    tokens = np.arange(5000, dtype=np.uint16)
    first = [StreamBatches(tokens, 4, 32, seed=7, epoch=e).get(0)[0][0, 0].item() for e in range(6)]
    again = [StreamBatches(tokens, 4, 32, seed=7, epoch=e).get(0)[0][0, 0].item() for e in range(6)]
    assert first == again and len(set(first)) > 1  # reproducible, and varies across epochs


def test_max_batch_size():
    assert max_batch_size(101, 10) == 10
    assert max_batch_size(10, 10) == 0
