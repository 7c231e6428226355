import pytest
import torch

import lstmgen
from lstmgen.config import ModelConfig
from lstmgen.errors import LstmgenError
from lstmgen.model import LSTMLanguageModel


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_step_by_step_equals_whole_sequence(cell):
    torch.manual_seed(0)
    model = LSTMLanguageModel(
        ModelConfig(vocab_size=20, hidden=24, embedding=8, layers=2, cell=cell)
    ).eval()
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
    [
        ({"tie_weights": True, "embedding": 8, "hidden": 16}, "--tie-weights needs"),
        ({"cell": "rnn"}, "--cell"),
        ({"dropout": 1.5}, "--dropout"),
        ({"layers": 0}, "--layers"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(LstmgenError, match=message):
        ModelConfig(vocab_size=10, **kwargs)


def test_locked_dropout_masks_are_constant_across_time():
    torch.manual_seed(0)
    model = LSTMLanguageModel(
        ModelConfig(
            vocab_size=10, embedding=8, hidden=8, layers=1, dropout=0.5, locked_dropout=True
        )
    ).train()
    out = model._dropout(torch.ones(3, 20, 8))
    assert torch.equal(out, out[:, :1].expand_as(out))  # every time step has its row's mask
    assert (out == 0).any() and not torch.equal(out[0], out[1])  # it does drop, differently per row
    model.config.locked_dropout = False
    out = model._dropout(torch.ones(3, 20, 8))
    assert not torch.equal(out, out[:, :1].expand_as(out))  # standard dropout: a new mask per step


def test_embedding_dropout_drops_whole_tokens():
    torch.manual_seed(0)
    model = LSTMLanguageModel(
        ModelConfig(vocab_size=50, embedding=8, hidden=8, layers=1, embed_dropout=0.5)
    ).train()
    idx = torch.arange(50).repeat(2, 1)  # every token twice
    out = model._embed(idx)
    dropped = (out == 0).all(-1)
    assert dropped.any() and torch.equal(
        dropped[0], dropped[1]
    )  # a dropped token is dropped everywhere
    assert torch.equal(model.eval()._embed(idx), model.embed(idx))


def test_weight_drop_trains_through_the_fused_kernel_and_leaves_eval_deterministic():
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=20, embedding=8, hidden=16, layers=2, dropout=0.0, weight_drop=0.5
    )
    model = LSTMLanguageModel(config)
    idx, targets = torch.randint(1, 20, (4, 12)), torch.randint(1, 20, (4, 12))
    model.train()
    _, loss_a, _ = model(idx, targets=targets)
    _, loss_b, _ = model(idx, targets=targets)
    assert loss_a.item() != loss_b.item()  # a new DropConnect mask each call
    loss_a.backward()
    assert model.rnn.weight_hh_l1.grad is not None and model.rnn.weight_hh_l1.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        first, _, _ = model(idx)
        second, _, _ = model(idx)
        plain, _ = model.rnn(model.embed(idx))
    assert torch.equal(first, second) and torch.allclose(
        first, model.head(plain)
    )  # eval: the plain LSTM


def test_awd_options_train_end_to_end(corpus, tmp_path):
    import lstmgen
    from conftest import TINY

    settings = {
        **TINY,
        "dropout": 0.3,
        "locked_dropout": True,
        "embed_dropout": 0.1,
        "weight_drop": 0.2,
    }
    result = lstmgen.train([corpus], out=tmp_path / "run", max_steps=40, quiet=True, **settings)
    assert result.steps == 40 and result.last_val_bits_per_char is not None
    assert lstmgen.load(tmp_path / "run").generate("The ", length=20, seed=1)


def test_activation_regularisers_penalise_outputs_and_their_change_in_training_only():
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=20,
        embedding=8,
        hidden=16,
        layers=1,
        dropout=0.0,
        activation_reg=2.0,
        temporal_reg=1.0,
    )
    model = LSTMLanguageModel(config).train()
    idx, targets = torch.randint(1, 20, (3, 10)), torch.randint(1, 20, (3, 10))
    _, loss, _ = model(idx, targets=targets)
    out, _ = model.rnn(model.embed(idx))
    expected = 2.0 * out.pow(2).mean() + 1.0 * (out[:, 1:] - out[:, :-1]).pow(2).mean()
    torch.testing.assert_close(model.penalty, expected)
    plain = torch.nn.functional.cross_entropy(model.head(out).reshape(-1, 20), targets.reshape(-1))
    torch.testing.assert_close(loss, plain)  # the reported loss stays the cross-entropy alone
    (loss + model.penalty).backward()
    with_penalty = model.rnn.weight_hh_l0.grad.clone()
    model.zero_grad()
    model(idx, targets=targets)[1].backward()
    assert not torch.allclose(
        with_penalty, model.rnn.weight_hh_l0.grad
    )  # the penalty moves the weights
    model.eval()
    model(idx, targets=targets)
    assert model.penalty is None  # evaluation scores the cross-entropy alone
    off = LSTMLanguageModel(
        ModelConfig(vocab_size=20, activation_reg=0.0, temporal_reg=0.0)
    ).train()
    off(idx, targets=targets)
    assert off.penalty is None  # both off: nothing is added


@pytest.mark.parametrize("name", ["activation_reg", "temporal_reg"])
@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_bad_activation_regularisers(name, value):
    with pytest.raises(LstmgenError, match=f"--{name.replace('_', '-')}"):
        ModelConfig(vocab_size=10, **{name: value})


@pytest.mark.parametrize(
    "shape",
    [
        {},
        {"cell": "gru", "layers": 3},
        {"tie_weights": True, "embedding": 32, "hidden": 32},
        {"layers": 1, "embedding": 8, "hidden": 40},
    ],
)
def test_the_parameter_count_from_the_config_is_the_module_s(shape):
    config = ModelConfig(vocab_size=57, **shape)
    assert config.parameter_count() == LSTMLanguageModel(config).num_parameters()


def test_info_reads_a_run_without_pytorch(trained_run):
    import subprocess
    import sys

    code = (
        "import sys, lstmgen; data = lstmgen.info(sys.argv[1]); "
        "assert 'torch' not in sys.modules, 'torch was imported'; print(data['parameters'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(trained_run)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == lstmgen.load(trained_run).module.num_parameters()
