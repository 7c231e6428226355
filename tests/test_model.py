import pytest
import torch

from lstmgen.errors import LstmgenError
from lstmgen.model import LSTMLanguageModel, ModelConfig


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_step_by_step_equals_whole_sequence(cell):
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab_size=20, hidden=24, embedding=8, layers=2, cell=cell)).eval()
    idx = torch.randint(1, 20, (3, 12))
    logits, _, _ = model(idx)  # (B, T, V)
    state = None
    for t in range(12):
        step_logits, state = model.step(idx[:, t], state)
        torch.testing.assert_close(step_logits, logits[:, t], atol=1e-5, rtol=1e-5)


def test_loss_and_shapes():
    model = LSTMLanguageModel(ModelConfig(vocab_size=10, hidden=16, embedding=4))
    idx = torch.randint(0, 10, (2, 5))
    logits, loss, (h, c) = model(idx, targets=idx)
    assert logits.shape == (2, 5, 10) and h.shape == (2, 2, 16) and loss.ndim == 0


def test_tied_weights_share_one_matrix():
    model = LSTMLanguageModel(ModelConfig(vocab_size=10, hidden=16, embedding=16, tie_weights=True))
    assert model.head.weight is model.embed.weight


@pytest.mark.parametrize(
    "kwargs,message",
    [({"tie_weights": True, "embedding": 8, "hidden": 16}, "--tie-weights needs"), ({"cell": "rnn"}, "--cell"), ({"dropout": 1.5}, "--dropout"), ({"layers": 0}, "--layers")],
)
def test_bad_config(kwargs, message):
    with pytest.raises(LstmgenError, match=message):
        ModelConfig(vocab_size=10, **kwargs)
