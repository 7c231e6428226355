"""Sizing the model to --max-time (sizing.py)."""

import json
import statistics

import pytest
import torch

import lstmgen
import lstmgen.training.sizing as sizing
from conftest import make_text
from lstmgen.config import ModelConfig


def count_parameters(config: ModelConfig) -> int:
    """The model's parameter count, built on the meta device: no memory, time or random draws."""
    from lstmgen.model import LSTMLanguageModel

    with torch.device("meta"):
        return LSTMLanguageModel(config).num_parameters()


@pytest.fixture(autouse=True)
def untimed_sizing(monkeypatch):
    """Fake speeds take real time to compute here: no share of the budget limits the ladder."""
    monkeypatch.setattr(sizing, "SIZING_SHARE", float("inf"))


def fake_speed(flops_per_s):
    """A machine whose training speed is inversely proportional to the parameter count."""

    def measure(config, batch_size, seq_len, device, **_):
        parameters = count_parameters(config)
        return flops_per_s / (6 * parameters), parameters

    return measure


@pytest.mark.parametrize("budget_s", [10, 60, 600, 6000])
def test_the_largest_size_that_reads_enough_tokens_per_parameter(monkeypatch, budget_s):
    monkeypatch.setattr(sizing, "measure_speed", fake_speed(4e10))
    config = ModelConfig(vocab_size=65)
    chosen = sizing.size_for_budget(
        config,
        budget_s=budget_s,
        train_tokens=10**9,
        batch_size=16,
        seq_len=32,
        device=torch.device("cpu"),
    )

    def tokens_per_parameter(hidden):
        params = count_parameters(ModelConfig(vocab_size=65, hidden=hidden))
        return 4e10 / (6 * params) * budget_s * sizing.TRAINING_SHARE / params

    fitting = [h for h in sizing.LADDER if tokens_per_parameter(h) >= sizing.TOKENS_PER_PARAMETER]
    assert chosen.hidden == (max(fitting) if fitting else sizing.LADDER[0])
    assert chosen.limited_by == (
        "time"
        if fitting and max(fitting) < sizing.LADDER[-1]
        else "smallest"
        if not fitting
        else "ladder"
    )


def test_a_longer_budget_never_picks_a_smaller_model(monkeypatch):
    monkeypatch.setattr(sizing, "measure_speed", fake_speed(4e10))
    sizes = [
        sizing.size_for_budget(
            ModelConfig(vocab_size=65),
            budget_s=b,
            train_tokens=10**9,
            batch_size=16,
            seq_len=32,
            device=torch.device("cpu"),
        ).hidden
        for b in (30, 60, 120, 300, 600, 1200)
    ]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_a_small_corpus_caps_the_size(monkeypatch):
    monkeypatch.setattr(
        sizing, "measure_speed", fake_speed(1e15)
    )  # time is no limit on this machine
    chosen = sizing.size_for_budget(
        ModelConfig(vocab_size=65),
        budget_s=600,
        train_tokens=300_000,
        batch_size=16,
        seq_len=32,
        device=torch.device("cpu"),
    )
    assert (
        chosen.limited_by == "data" and chosen.parameters <= sizing.PARAMETERS_PER_TOKEN * 300_000
    )
    bigger = next(h for h in sizing.LADDER if h > chosen.hidden)
    assert (
        count_parameters(ModelConfig(vocab_size=65, hidden=bigger))
        > sizing.PARAMETERS_PER_TOKEN * 300_000
    )


def test_sizing_measures_this_machine_and_draws_nothing_from_the_random_stream():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    # A budget of a millisecond: even the smallest size is short of time on any machine.
    chosen = sizing.size_for_budget(
        ModelConfig(vocab_size=33),
        budget_s=1e-3,
        train_tokens=10**9,
        batch_size=4,
        seq_len=16,
        device=torch.device("cpu"),
    )
    assert torch.equal(
        torch.get_rng_state(), before
    )  # the trial models' inits and batches drew on a fork
    assert chosen.hidden == sizing.LADDER[0] and chosen.limited_by == "smallest"
    assert chosen.tokens_per_s > 0 and chosen.parameters == count_parameters(
        ModelConfig(vocab_size=33, hidden=chosen.hidden)
    )


def test_max_time_without_hidden_sizes_the_model_and_records_why(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    # The budget (an hour, of which two steps are used) is no limit; the data is: ~18,000
    # training tokens cannot fill even the smallest size (~71,000 parameters > 2 per token), so
    # sizing stops at the first rung, whatever this machine's speed.
    lstmgen.train(
        [corpus],
        out=tmp_path / "auto",
        max_time="1h",
        max_steps=2,
        batch_size=4,
        seq_len=16,
        quiet=True,
    )
    config = json.loads((tmp_path / "auto" / "config.json").read_text())
    assert config["model"]["hidden"] == config["sizing"]["hidden"] == sizing.LADDER[0]
    assert config["sizing"]["limited_by"] == "smallest" and config["sizing"]["tokens_per_s"] > 0
    assert config["sizing"]["parameters"] > sizing.PARAMETERS_PER_TOKEN * len(make_text())
    lstmgen.train(
        [corpus],
        out=tmp_path / "fixed",
        max_time="1h",
        max_steps=1,
        hidden=48,
        embedding=16,
        layers=1,
        batch_size=4,
        seq_len=16,
        quiet=True,
    )
    config = json.loads((tmp_path / "fixed" / "config.json").read_text())
    assert config["model"]["hidden"] == 48 and "sizing" not in config  # --hidden given: no sizing
    lstmgen.train(
        [corpus],
        out=tmp_path / "epochs",
        epochs=1,
        max_steps=1,
        batch_size=4,
        seq_len=16,
        quiet=True,
    )
    config = json.loads((tmp_path / "epochs" / "config.json").read_text())
    assert (
        "sizing" not in config and config["model"]["hidden"] == ModelConfig(vocab_size=2).hidden
    )  # no budget: the default


def test_word_level_runs_are_not_sized(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    lstmgen.train(
        [corpus],
        out=tmp_path / "word",
        level="word",
        max_time="1h",
        max_steps=1,
        batch_size=4,
        seq_len=16,
        quiet=True,
    )
    config = json.loads((tmp_path / "word" / "config.json").read_text())
    assert "sizing" not in config and config["model"]["hidden"] == 256


def test_sizing_stops_climbing_after_its_share_of_the_budget(monkeypatch):
    monkeypatch.setattr(sizing, "SIZING_SHARE", 0.03)
    monkeypatch.setattr(sizing, "measure_speed", fake_speed(1e15))  # every size fits the time

    class Clock:  # each reading is one second later: timing a size "takes" a second of CPU
        now = 0.0

        def thread_time(self):
            self.now += 1.0
            return self.now

    monkeypatch.setattr(sizing, "time", Clock())
    chosen = sizing.size_for_budget(
        ModelConfig(vocab_size=65),
        budget_s=100,
        train_tokens=10**9,
        batch_size=16,
        seq_len=32,
        device=torch.device("cpu"),
    )
    # 3 s of the 100-s budget: after the third size timed, 3 s have passed.
    assert (chosen.hidden, chosen.limited_by) == (sizing.LADDER[2], "sizing time")


def test_sizing_speed_reads_one_threads_cpu_time_so_load_does_not_change_the_model():
    alone = {1: [0.010, 0.011, 0.010]}
    assert sizing.sizing_speed(alone, [0.010, 0.010, 0.011], 512) == pytest.approx(512 / 0.010)
    # beside a busy process: the step takes twice as long on the clock, its CPU time is as alone
    loaded = {n: [2 * t for t in times] for n, times in alone.items()}
    assert sizing.sizing_speed(loaded, [0.010, 0.010, 0.011], 512) == pytest.approx(512 / 0.010)
    # no one-thread CPU time (a GPU, or threads fixed above one): the faster count's clock
    fixed = {2: [0.016, 0.018, 0.016]}
    assert sizing.sizing_speed(fixed, [], 512) == pytest.approx(512 / 0.016)


def test_a_cpu_whose_threads_lstmgen_chooses_is_sized_by_one_thread(monkeypatch):
    used = []
    monkeypatch.setattr(sizing.threads, "requested", lambda: None)
    monkeypatch.setattr(sizing.threads, "use", used.append)
    sizing.measure_speed(ModelConfig(vocab_size=33, hidden=64), 4, 16, torch.device("cpu"))
    assert set(used) == {1}


def test_a_one_thread_step_is_timed_in_cpu_time_too(monkeypatch):
    """The clock runs three times too fast (as if the step shared its core): the speed
    measured is the CPU time's, not the clock's."""
    real = sizing.time.perf_counter
    start = real()
    monkeypatch.setattr(sizing.time, "perf_counter", lambda: start + 3 * (real() - start))
    monkeypatch.setattr(sizing.threads, "requested", lambda: 1)
    seen = {}
    combine = sizing.sizing_speed

    def record(wall_s, cpu_s, tokens):
        seen.update(wall=wall_s[1], cpu=cpu_s)
        return combine(wall_s, cpu_s, tokens)

    monkeypatch.setattr(sizing, "sizing_speed", record)
    config = ModelConfig(vocab_size=33, hidden=64)
    speed, _ = sizing.measure_speed(config, 4, 16, torch.device("cpu"))
    assert len(seen["cpu"]) == len(seen["wall"]) >= 5
    assert statistics.median(seen["cpu"]) < statistics.median(seen["wall"]) / 2
    assert speed == pytest.approx(4 * 16 / statistics.median(seen["cpu"]))


def test_a_budgets_dropout_and_lr_follow_the_epochs_it_reads(monkeypatch, tmp_path):
    """Issues 25 and 32: a --max-time budget's dropout follows the epochs it will read (0.03
    for a short one, 0.4 for one that reads the corpus ~180 times), and below
    SHORT_RUN_EPOCHS its peak lr is 0.015, unless the user set them."""
    monkeypatch.setattr(  # 1,000 tokens/s at every size: the epochs follow from the budget
        sizing,
        "measure_speed",
        lambda config, batch_size, seq_len, device, **_: (1000.0, count_parameters(config)),
    )
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")  # ~18,000 training tokens
    common = dict(max_steps=1, batch_size=4, seq_len=16, quiet=True)

    def config_of(name, **options):
        lstmgen.train([corpus], out=tmp_path / name, **common, **options)
        return json.loads((tmp_path / name / "config.json").read_text())

    short = config_of("short", max_time="10s")  # 9,000 tokens: half an epoch
    assert (short["model"]["dropout"], short["train"]["lr"]) == (0.03, 0.015)
    rule = short["sizing"]["budget_rule"]
    assert (rule["dropout"], rule["lr"]) == (0.03, 0.015) and 0.3 < rule["epochs"] < 0.7
    long = config_of("long", max_time="1h")  # ~180 epochs
    assert (long["model"]["dropout"], long["train"]["lr"]) == (0.4, 0.01)
    assert "lr" not in long["sizing"]["budget_rule"]
    mine = config_of("mine", max_time="10s", dropout=0.2)  # what the user sets stays
    assert (mine["model"]["dropout"], mine["train"]["lr"]) == (0.2, 0.015)
    assert "dropout" not in mine["sizing"]["budget_rule"]
    # another run's config brings its settings, but not what its budget chose
    again = config_of("again", max_time="1h", config=str(tmp_path / "short"))
    assert (again["model"]["dropout"], again["train"]["lr"]) == (0.4, 0.01)


def test_the_budget_rule_leaves_what_the_user_or_the_lr_finder_sets():
    assert [sizing.budget_dropout(e) for e in (1, 3, 5, 10, 20, 41, 1000)] == [
        0.03,
        0.03,
        0.1,
        0.2,
        0.3,
        0.4,
        0.4,
    ]
    assert sizing.budget_settings(1.0, set()) == {"dropout": 0.03, "lr": 0.015}
    assert sizing.budget_settings(sizing.SHORT_RUN_EPOCHS, set()) == {"dropout": 0.1}
    assert sizing.budget_settings(1.0, {"lr"}) == {"dropout": 0.03}
    assert sizing.budget_settings(1.0, set(), lr_finder=True) == {"dropout": 0.03}
    assert sizing.budget_settings(20.0, {"dropout"}) == {}
