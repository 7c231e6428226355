"""Size the model to the time budget: `train --max-time T` without --hidden picks the hidden size.

A model learns fastest per second when the budget lets it read a few tokens per
parameter: a bigger one is still far from trained when time runs out, a smaller one
has stopped gaining (BENCHMARKS.md, issue #6). So each hidden size of a ladder is
timed for a few training steps on this machine, with the run's own batch shape, and
the largest one whose budget covers TOKENS_PER_PARAMETER tokens per parameter is
chosen; it is also kept to at most PARAMETERS_PER_TOKEN parameters per training token,
so a fast GPU does not pick a model the corpus cannot fill.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, replace

import torch

from lstmgen import threads
from lstmgen.config import ModelConfig
from lstmgen.device import autocast_for
from lstmgen.model import LSTMLanguageModel
from lstmgen.training.schedule import make_optimizer

# Each step a third to a half more parameters (about 1.3-1.6x the tokens to train): a budget
# between two sizes (bf16's 1.4x, say) reaches the next one (issue 32, item 3).
LADDER = (64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 1024, 1536, 2048)
# tokens read per parameter at which a size pays off (measured: BENCHMARKS.md)
TOKENS_PER_PARAMETER = 4.0
# at most this many parameters per training token: a guard against fitting noise
PARAMETERS_PER_TOKEN = 2.0
# The regularisation a --max-time budget trains with follows the epochs it will read (where the
# user set none). Side by side on three corpora (BENCHMARKS.md, issue 25), dropout 0.03 with
# lr 0.015 won every run of 1.6-3.3 epochs (by 0.020-0.032 nats/char) and dropout 0.1 with lr
# 0.01 every run of 11-21 (by 0.014-0.034); at 5.5-6.1 epochs the two were within 0.007. On a
# 280 KB book (2x128, 8,000 steps, issue 32) 0.2 beat 0.1 at 10 epochs (1.604 against 1.618)
# and at 15 (1.695 against 1.713), both past their best: the more epochs, the more a corpus is
# learnt by heart. So dropout grows with the log of the epochs, through 0.03 at 3 epochs and
# 0.2 at 10 (0.3 at ~20, the most, 0.4, from ~41); below SHORT_RUN_EPOCHS the peak rate is 0.015.
SHORT_RUN_EPOCHS = 5.0
SHORT_RUN_LR = 0.015
DROPOUT_POINTS = ((3.0, 0.03), (10.0, 0.2))  # (epochs, dropout): the line through them, in log
DROPOUT_RANGE = (0.03, 0.4)
SIZING_SHARE = 0.03  # of the budget, at most, spent timing sizes
TRAINING_SHARE = 0.9  # of the budget, the rest goes to evaluations and checkpoints


@dataclass
class Sizing:
    hidden: int
    parameters: int
    tokens_per_s: float  # measured training speed of the chosen size
    budget_tokens: float  # tokens it can read in the budget
    # what stopped a larger size: "time", "data", "ladder" (none larger),
    # "smallest" (even it is short)
    limited_by: str


def measure_speed(
    config: ModelConfig,
    batch_size: int,
    seq_len: int,
    device: torch.device,
    *,
    seconds: float = 0.15,
) -> tuple[float, int]:
    """Training tokens/s of a model of this config (forward, backward, step), and its parameter
    count: the median of at least 5 steps (a burst of load does not decide the size), on a
    CPU on one thread and in its CPU time unless the user fixed the thread count, on a GPU on
    the clock (see sizing_speed)."""
    model = LSTMLanguageModel(config).to(device).train()
    optimizer = make_optimizer(model, 1e-3, 0.0)
    x = torch.randint(0, config.vocab_size, (batch_size, seq_len), device=device)
    # a conditioned model reads its conditions too (value 0 of each column costs the same)
    given = torch.zeros(batch_size, seq_len, len(config.conditions), dtype=torch.long)
    conditions = given.to(device) if config.conditions else None

    def step() -> float:
        started, cpu_started = time.perf_counter(), time.thread_time()
        with autocast_for(device):
            _, loss, _ = model(x, None, x, conditions=conditions)
        model.objective(loss).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        cpu_s.append(time.thread_time() - cpu_started)
        return time.perf_counter() - started

    cpu_s: list[float] = []
    fixed = threads.requested()
    # On a CPU whose thread count lstmgen chooses, one thread is timed (in CPU time, below):
    # all cores' clock time swung from 31,000 to 45,000 tokens/s on an idle 2-core machine
    # between runs, enough to change the size chosen (issue 25, item 3).
    candidates = [fixed] if fixed or device.type != "cpu" else [1]
    times: dict[int, list[float]] = {n: [] for n in candidates}
    for n in candidates:  # warm-up: allocations, kernel choice, the thread pool
        threads.use(n)
        step()
    cpu_s.clear()
    one_thread_cpu: list[float] = []
    start = time.perf_counter()
    # At least 5 steps under each count (a median of 5 shrugs off a burst of load), at most 25.
    while min(map(len, times.values())) < 5 or (
        time.perf_counter() - start < seconds and min(map(len, times.values())) < 25
    ):
        for n in candidates:  # in turns, so a change of load falls on both alike
            threads.use(n)
            times[n].append(step())
            if n == 1 and device.type == "cpu":
                one_thread_cpu.append(cpu_s[-1])
    return sizing_speed(times, one_thread_cpu, batch_size * seq_len), model.num_parameters()


def sizing_speed(wall_s: dict[int, list[float]], one_thread_cpu_s: list[float], tokens: int):
    """Tokens/s to size by: one thread's median step in CPU time where it was timed (a CPU),
    else the faster thread count's median step on the clock (a GPU, or a thread count the
    user fixed above one). Another process on the machine stretches a step on the clock but
    hardly its CPU time (one thread computes in the calling thread), so the size follows the
    machine, not the load of the moment (issue 17: a busy-loop beside the sizing made it
    pick 2×128 where it picks 2×192 alone). Training may then run faster on all cores: on 2
    cores by 1.04-1.34× over a run (issue 25), so the size is, if anything, on the small side."""
    if one_thread_cpu_s:
        return tokens / statistics.median(one_thread_cpu_s)
    return tokens / min(statistics.median(t) for t in wall_s.values())


def size_for_budget(
    config: ModelConfig,
    *,
    budget_s: float,
    train_tokens: int,
    batch_size: int,
    seq_len: int,
    device: torch.device,
    processes: int = 1,
) -> Sizing:
    """The largest hidden size of LADDER that the budget can train and the data can fill.

    Under torchrun, rank 0 times one process (on its share of the cores, or its GPU) and the
    budget counts `processes` such processes reading side by side.

    Timing stops climbing once it has taken SIZING_SHARE of the budget (a 10-s run must not
    spend 12 s choosing its size), counted in this thread's CPU time: a busy machine makes
    sizing take longer, not choose a smaller model.
    """
    chosen, started = None, time.thread_time()
    # inits here draw nothing from the run's streams
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for hidden in LADDER:
            speed, parameters = measure_speed(
                replace(config, hidden=hidden), batch_size, seq_len, device
            )
            tokens = speed * processes * budget_s * TRAINING_SHARE
            if tokens < TOKENS_PER_PARAMETER * parameters:
                limit = "time"
            elif parameters > PARAMETERS_PER_TOKEN * train_tokens:
                limit = "data"
            else:
                # fits; try the next size, if timing it still fits the budget's share
                chosen = Sizing(hidden, parameters, speed, tokens, "ladder")
                if time.thread_time() - started < SIZING_SHARE * budget_s:
                    continue
                chosen.limited_by = "sizing time"
                break
            if chosen is None:  # even the smallest size is short of time or data: take it anyway
                chosen = Sizing(hidden, parameters, speed, tokens, "smallest")
            else:
                chosen.limited_by = limit
            break
    return chosen


def budget_dropout(epochs: float) -> float:
    """The dropout a budget of `epochs` epochs trains with (see DROPOUT_POINTS)."""
    (e0, d0), (e1, d1) = DROPOUT_POINTS
    low, high = DROPOUT_RANGE
    slope = (d1 - d0) / math.log(e1 / e0)
    return round(min(high, max(low, d0 + slope * math.log(max(epochs, 1e-9) / e0))), 2)


def budget_settings(epochs: float, given, *, lr_finder: bool = False) -> dict:
    """The dropout (and, below SHORT_RUN_EPOCHS, the peak lr) a budget of `epochs` epochs
    trains with, less what the user set (or --lr-finder chooses)."""
    settings = {"dropout": budget_dropout(epochs)}
    if epochs < SHORT_RUN_EPOCHS:
        settings["lr"] = SHORT_RUN_LR
    taken = set(given) | ({"lr"} if lr_finder else set())
    return {k: v for k, v in settings.items() if k not in taken}
