"""Training a run: the model and trainer built from its RunConfig, trained from the start or
from its last checkpoint (saving.py writes and reads those; outcome.py says how it ended)."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch

from lstmgen.checkpoint import check_weights, load_trainer_state, load_weights
from lstmgen.config import RunConfig
from lstmgen.config.memory import machine_memory_bytes, refuse_training_beyond
from lstmgen.data.store import TokenStore
from lstmgen.device import resolve_device
from lstmgen.errors import LstmgenError, TrainingInterrupted, warn
from lstmgen.files import FULL, locked, read_progress
from lstmgen.inference import Model, build_model
from lstmgen.run.create import Prepared, unit_of
from lstmgen.run.finetune import initial_weights, open_base
from lstmgen.run.outcome import TrainResult, already_reached, held_out, result_of
from lstmgen.run.saving import open_prepared, refuse_read_only, resume, save_checkpoint
from lstmgen.training.batches import max_batch_size
from lstmgen.training.distributed import Peers
from lstmgen.training.progress import Progress
from lstmgen.training.range_test import range_test
from lstmgen.training.report import QuietHooks, RunReporter, truncate_metrics
from lstmgen.training.trainer import Trainer

__all__ = ["TrainResult", "refuse_read_only", "resume", "save_checkpoint", "train"]


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
        prepared = open_prepared(out, peers)
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

    if peers.size > 1 or "processes" in config.records:  # config.json says, as info does
        config = replace(config, records={**config.records, "processes": peers.size})

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
            result = result_of(out, trainer, reached, config.tokens_per_char)
            if peers.is_main:
                result.summary = already_reached(out, trainer, reached)
            return result
        epoch = progress.epoch + progress.batch / max(trainer.steps_per_epoch, 1)
        reporter.print(
            f"resuming {out} at step {progress.step:,} (epoch {epoch:.2f}, "
            f"{progress.tokens:,} tokens seen)" + processes_note(peers)
        )
    else:
        reporter.print(
            f"training {model.num_parameters():,} parameters on {len(store.train):,} "
            f"{unit_of(tokenizer)} ({len(store.val):,} held out), device {device}"
            + processes_note(peers)
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
    result = result_of(out, trainer, reason, config.tokens_per_char)
    if reason.startswith("interrupted"):
        raise TrainingInterrupted(result, processes=peers.size)
    if peers.is_main:
        result.summary = (
            f"stopped ({reason}) after {result.steps:,} steps; {held_out(result, trainer)}. "
            f"Generate with: lstmgen generate {out}"
        )
    return result


def processes_note(peers: Peers) -> str:
    """What the first line adds under torchrun: how many processes train, and how."""
    if peers.size == 1:
        return ""
    return (
        f", {peers.size} processes (torchrun: each reads its own --batch-size streams, "
        "gradients averaged)"
    )


def _memory_of(device: torch.device) -> int | None:
    """The memory a model on this device may use: the GPU's own, else the machine's."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return machine_memory_bytes()


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
