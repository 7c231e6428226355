"""Training a run: the model and trainer built from its RunConfig, checkpoints written to the
run directory, resuming where it stopped, and what `info` says about it."""

from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lstmgen.checkpoint import (
    check_weights,
    load_trainer_state,
    load_weights,
    save_trainer_state,
    save_weights,
)
from lstmgen.config import RunConfig, bits_per_char
from lstmgen.config.memory import machine_memory_bytes, refuse_training_beyond
from lstmgen.data.store import TokenStore
from lstmgen.describe import last_evaluation
from lstmgen.device import resolve_device
from lstmgen.errors import LstmgenError, TrainingInterrupted, warn
from lstmgen.files import FULL, DiskFull, locked, read_progress, write_checkpoint, write_json
from lstmgen.inference import Model, build_model
from lstmgen.run.create import Prepared, unit_of
from lstmgen.run.finetune import initial_weights, open_base
from lstmgen.tokens import load_tokenizer
from lstmgen.training.batches import max_batch_size
from lstmgen.training.distributed import Peers
from lstmgen.training.progress import Progress
from lstmgen.training.range_test import range_test
from lstmgen.training.report import QuietHooks, RunReporter, truncate_metrics
from lstmgen.training.trainer import Trainer


@dataclass
class TrainResult:
    """What lstmgen.train returns.

    best_val_bits_per_char is the lowest held-out figure of all evaluations (the weights in
    best/); last_val_bits_per_char is the final model's, measured at its last step (None if
    that step was not evaluated, e.g. after Ctrl-C).
    """

    run_dir: Path
    stopped_because: str
    steps: int
    epochs: float
    tokens: int
    elapsed_s: float
    best_val_bits_per_char: float | None
    last_val_bits_per_char: float | None
    # The closing line: where the run is, how it did, how to use it (empty under torchrun but
    # in process 0). The command prints it on stdout; the API leaves it to the caller.
    summary: str = ""

    def to_json(self) -> dict:
        """What `train --json` prints: the figures, the run directory as text."""
        data = {k: v for k, v in vars(self).items() if k != "summary"}
        return {**data, "run_dir": str(self.run_dir)}


def resume(out: Path, options: dict) -> tuple[RunConfig, bool]:
    """The run's config with the options given on resume, and whether a new peak lr was given."""
    if not (out / "config.json").is_file():
        RunConfig.read(out)  # the one-line error for a run that is not there
    refuse_read_only(out)
    with locked(out):  # reading as the writer discards a half-written checkpoint
        config = RunConfig.read(out, writer=True)
    weights = out / "model.safetensors"
    progress = read_progress(weights) if weights.exists() else {}
    lr_changed = "lr" in options and options["lr"] != config.train.lr
    return config.resumed(options, progress), lr_changed


def refuse_read_only(out: Path) -> None:
    """A one-line error if the run's folder or the files it appends to cannot be written."""
    for path in (out, out / "best", out / "metrics.jsonl", out / "samples.md"):
        if path.exists() and not os.access(path, os.W_OK):
            raise LstmgenError(
                f"{out} is read-only ({path} cannot be written); copy the run to a writable "
                "place and resume the copy"
            )


def train(
    out: Path,
    config: RunConfig,
    prepared: Prepared | None = None,
    *,
    resuming: bool,
    quiet: bool,
    lr_changed: bool = False,
    on_evaluation=None,
    peers: Peers | None = None,
) -> TrainResult:
    """Train the run in `out` as its config says; from its last checkpoint when resuming.

    The run's lock is held throughout: a second lstmgen training it gets a one-line error.
    on_evaluation(row) sees each metrics.jsonl evaluation row; a text it returns stops the
    run there (checkpointed, as at any limit) and becomes its stopped_because.
    `peers`: the other training processes under torchrun (rank 0 alone writes and prints).
    """
    peers = peers or Peers()
    with locked(out) if peers.is_main else nullcontext():
        return _train(
            out,
            config,
            prepared,
            resuming=resuming,
            quiet=quiet,
            lr_changed=lr_changed,
            on_evaluation=on_evaluation,
            peers=peers,
        )


def _train(
    out: Path,
    config: RunConfig,
    prepared: Prepared | None,
    *,
    resuming: bool,
    quiet: bool,
    lr_changed: bool,
    on_evaluation=None,
    peers: Peers,
) -> TrainResult:
    train_config = config.train
    device = peers.device(resolve_device(train_config.device))
    torch.manual_seed(train_config.seed)
    if prepared is None:
        prepared = _open_prepared(out, peers)
        if config.train.init_from and not (out / "model.safetensors").exists():
            # a fine-tune resumed before its first checkpoint starts from its base again
            base = open_base(config.train.init_from)
            prepared.initial = initial_weights(base, config.model)
    tokenizer, store = prepared.tokenizer, prepared.store
    checkpoint = out / "model.safetensors"
    if resuming and checkpoint.exists():  # before the model is built from config.json
        check_weights(config.model, checkpoint, config_name=str(out / "config.json"))
    refuse_training_beyond(
        config.model,
        train_config.batch_size,
        train_config.seq_len,
        available=_memory_of(device),
        where="this machine's memory" if device.type == "cpu" else f"the memory of {device}",
    )
    model = build_model(config, tokenizer)
    if prepared.vectors is not None:
        model.set_embeddings(torch.from_numpy(prepared.vectors))
    if prepared.initial is not None:  # fine-tuning: the base's weights
        model.load_state_dict(prepared.initial)
    model = model.to(device)
    if peers.rank:  # the same initial weights everywhere, but each process its own dropout
        torch.manual_seed(train_config.seed + peers.rank)
    sampler_model = Model(model, tokenizer, run_dir=out)  # run_dir: its copy index
    samplers: dict[int, Model] = {id(model): sampler_model}

    def sampler(**settings) -> str:  # from the weights evaluated: the average, once it began
        weights = trainer.average.weights()
        if id(weights) not in samplers:
            samplers[id(weights)] = Model(weights, tokenizer, run_dir=out)
        was_training = weights.training
        text = samplers[id(weights)].generate("", **settings)
        weights.train(was_training)
        return text  # type: ignore[return-value]

    reporter = (
        RunReporter(
            out,
            sampler=sampler,
            novelty=sampler_model.novelty,
            quiet=quiet,
            tokens_per_char=config.tokens_per_char,
            tensorboard=train_config.tensorboard,
            on_evaluation=on_evaluation,
            sizing=config.records.get("sizing"),
        )
        if peers.is_main
        else QuietHooks()
    )
    if train_config.lr_finder and "lr_finder" not in config.records:  # or stopped during the test
        if peers.size > 1:
            raise LstmgenError(
                "--lr-finder runs in one process: find the rate without torchrun first, "
                "then train with --lr RATE (or resume this run in one process)"
            )
        config = _find_lr(model, store, config, out, reporter)

    def save(trainer: Trainer, best: bool = False) -> None:
        state = None if best else trainer.trainer_state()  # every process's, gathered
        if peers.is_main:
            save_checkpoint(out, config, tokenizer, trainer, best=best, state=state)

    streams = train_config.batch_size * peers.size
    if streams > max_batch_size(len(store.train), train_config.seq_len):
        raise LstmgenError(
            f"--batch-size {train_config.batch_size} on {peers.size} processes needs {streams} "
            f"streams of --seq-len {train_config.seq_len}, more than the training text holds; "
            "use fewer processes"
        )
    trainer = Trainer(
        model,
        store.train,
        store.val,
        config.train,
        hooks=reporter,
        save=save,
        device=device,
        peers=peers,
        unscored=tuple(sorted(getattr(tokenizer, "is_control", ()))),
        documents=(store.documents("train"), store.documents("val"))
        if store.documents("train") is not None
        else None,
    )
    if resuming and not checkpoint.exists():
        if peers.is_main:
            truncate_metrics(out / "metrics.jsonl", 0)
        reporter.print(f"{out} has no checkpoint yet; training starts from the beginning")
    if resuming and checkpoint.exists():
        progress = Progress(**read_progress(checkpoint))
        if lr_changed:  # a new peak rate given on resume replaces the one roll-backs had lowered
            progress.lr_scale, progress.rollbacks = 1.0, 0
        load_weights(model, checkpoint)
        state = load_trainer_state(out / "trainer_state.pt")
        if not trainer.load_trainer_state(state, progress) and peers.is_main:
            warn(
                f"{out} was saved by {int(state.get('world_size', 1))} training process(es) "
                f"and resumes on {peers.size}: each now reads other streams, so the recurrent "
                "state starts fresh (resume with as many processes to continue exactly)"
            )
        damaged = truncate_metrics(out / "metrics.jsonl", progress.step) if peers.is_main else 0
        if damaged:
            warn(
                f"dropped {damaged} damaged line{'s' if damaged > 1 else ''} of "
                f"{out / 'metrics.jsonl'} (cut short by a crash); its other rows are kept"
            )
        reached = trainer.finished()
        if reached is not None:
            result = _result(out, trainer, reached, config.tokens_per_char)
            if peers.is_main:
                result.summary = _already_reached(out, trainer, reached)
            return result
        epoch = progress.epoch + progress.batch / max(trainer.steps_per_epoch, 1)
        reporter.print(
            f"resuming {out} at step {progress.step:,} (epoch {epoch:.2f}, "
            f"{progress.tokens:,} tokens seen)"
        )
    else:
        reporter.print(
            f"training {model.num_parameters():,} parameters on {len(store.train):,} "
            f"{unit_of(tokenizer)} ({len(store.val):,} held out), device {device}"
        )
    try:
        reason = trainer.fit()
    except OSError as e:  # appending to metrics.jsonl or samples.md on a full disk
        if e.errno not in FULL:
            raise
        raise LstmgenError(
            f"the disk is full: {e.filename or out} could not be written (the last checkpoint "
            f"is whole); free some space, then continue with: lstmgen train --resume {out}"
        ) from None
    result = _result(out, trainer, reason, config.tokens_per_char)
    if reason.startswith("interrupted"):
        raise TrainingInterrupted(result, processes=peers.size)
    if peers.is_main:
        result.summary = (
            f"stopped ({reason}) after {result.steps:,} steps; {_held_out(result, trainer)}. "
            f"Generate with: lstmgen generate {out}"
        )
    return result


def _memory_of(device: torch.device) -> int | None:
    """The memory a model on this device may use: the GPU's own, else the machine's."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return machine_memory_bytes()


def _held_out(result: TrainResult, trainer: Trainer) -> str:
    """The closing line's figures: the final model's held-out bits/char and the best one."""
    best, last = result.best_val_bits_per_char, result.last_val_bits_per_char
    if best is None:
        return "not evaluated"
    best_text = f"best {best:.4f} (step {trainer.progress.best_step:,})"
    if last is None:
        return f"held-out: the end was not evaluated, {best_text}"
    return f"held-out {last:.4f} bits/char at the end, {best_text}"


LIMIT_FLAGS = {
    "max steps": "--max-steps",
    "epochs": "--epochs",
    "max time": "--max-time",
    "early stop": "--patience",
}


def _already_reached(out: Path, trainer: Trainer, reached: str) -> str:
    """The line for a resumed run that has nothing left to do: which limit, what to raise."""
    t, p = trainer.config, trainer.progress

    def raised(limit: float, now: float) -> float:  # twice the limit, or twice where it is
        return 2 * limit if 2 * limit > now else 2 * now

    if reached == "max steps":
        limit, more = f"--max-steps {t.max_steps}", f"--max-steps {raised(t.max_steps, p.step):.0f}"
    elif reached == "epochs":
        epochs = t.effective_epochs
        limit, more = f"--epochs {epochs}", f"--epochs {raised(epochs, p.epoch):.0f}"
    elif reached == "max time":
        limit = f"--max-time {t.max_time}"
        more = f"--max-time {_duration(raised(t.max_time_s or 0, p.elapsed_s))}"
    else:
        limit, more = f"--patience {t.patience}", f"--patience {2 * t.patience}"
    return (
        f"{out} already reached its limit ({limit}) at step {p.step:,}; nothing was trained. "
        f"To train on, raise it, e.g. lstmgen train --resume {out} {more} "
        "(--epochs, --max-time and --max-steps are the run's totals)"
    )


def _duration(seconds: float) -> str:
    """Seconds as a --max-time value, rounded up to whole minutes (or hours)."""
    if seconds < 60:
        return f"{math.ceil(seconds)}s"
    minutes = math.ceil(seconds / 60)
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def _result(out: Path, trainer: Trainer, reason: str, tokens_per_char: float) -> TrainResult:
    p = trainer.progress

    def bits(nats: float | None) -> float | None:
        return None if nats is None else float(bits_per_char(nats, tokens_per_char))

    evaluated = last_evaluation(out / "metrics.jsonl", up_to=p.step)
    at_end = evaluated is not None and evaluated["step"] == p.step
    return TrainResult(
        run_dir=out,
        stopped_because=reason,
        steps=p.step,
        epochs=p.epoch + p.batch / max(trainer.steps_per_epoch, 1),
        tokens=p.tokens,
        elapsed_s=p.elapsed_s,
        best_val_bits_per_char=bits(p.best_val_nats),
        last_val_bits_per_char=bits(p.last_val_nats) if at_end else None,
    )


def _find_lr(model, store: TokenStore, config: RunConfig, out: Path, reporter) -> RunConfig:
    """Run the learning-rate range test on the fresh model; record the suggested peak rate."""
    started, train = time.perf_counter(), config.train
    test = range_test(
        model,
        store.train,
        batch_size=train.batch_size,
        seq_len=train.seq_len,
        weight_decay=train.weight_decay,
        grad_clip=train.grad_clip,
        seed=train.seed,
        documents=store.documents("train"),
    )
    seconds = time.perf_counter() - started
    lowest = min(test.losses)
    reporter.print(
        f"lr finder: {len(test.rates)} steps at rates from {test.rates[0]:.0e} to "
        f"{test.rates[-1]:.2g} in {seconds:.1f} s"
        + (" (stopped when the loss blew up)" if test.stopped_early else "")
    )
    for rate, loss in test.table():
        mark = "  <- lowest" if loss == lowest else ""
        reporter.print(f"  lr {rate:<9.2g} smoothed loss {loss:.3f}{mark}")
    reporter.print(
        f"lr finder: using --lr {test.suggestion:.3g} (a tenth of the rate at the lowest loss)"
    )
    record = {
        "rates": test.rates,
        "losses": test.losses,
        "suggestion": test.suggestion,
        "seconds": round(seconds, 2),
    }
    config = replace(
        config,
        train=replace(train, lr=test.suggestion),
        records={**config.records, "lr_finder": record},
    )
    config.save(out / "config.json")
    return config


def _open_prepared(out: Path, peers: Peers) -> Prepared:
    """The run's tokenizer and token store, as saved in its directory."""
    if not peers.is_main and not (out / "data").is_dir():
        raise LstmgenError(
            f"training process {peers.rank} cannot see {out / 'data'}: every machine must see "
            "the run directory (put it on a filesystem they share)"
        )
    return Prepared(load_tokenizer(out / "tokenizer.json"), TokenStore.open(out / "data"))


def save_checkpoint(
    out: Path,
    config: RunConfig,
    tokenizer,
    trainer: Trainer,
    *,
    best: bool,
    state: dict | None = None,
) -> None:
    """The latest checkpoint (weights, trainer state, config) or best/ (weights, config, tokens).

    `state`: the trainer state to save (gathered from every process); by default the trainer's.
    """
    state = state if state is not None or best else trainer.trainer_state()
    progress = dict(vars(trainer.progress))
    config_json = config.to_json()

    def weights(path: Path) -> None:  # the averaged weights, once averaging has begun
        save_weights(trainer.average.weights(), path, progress)

    def config_file(path: Path) -> None:
        write_json(path, config_json)

    try:
        if best:
            write_checkpoint(
                out / "best",
                {
                    "model.safetensors": weights,
                    "config.json": config_file,
                    "tokenizer.json": tokenizer.save,
                },
            )
            return
        write_checkpoint(
            out,
            {
                "model.safetensors": weights,
                "trainer_state.pt": lambda path: save_trainer_state(state, path),
                "config.json": config_file,
            },
        )
    except DiskFull as e:
        raise LstmgenError(
            f"{e}; free some space, then continue with: lstmgen train --resume {out}"
        ) from None
