"""Training a run: the model and trainer built from its RunConfig, checkpoints written to the
run directory, resuming where it stopped, and what `info` says about it."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lstmgen.checkpoint import (
    load_trainer_state,
    load_weights,
    read_progress,
    save_trainer_state,
    save_weights,
)
from lstmgen.config import RunConfig
from lstmgen.data.store import TokenStore
from lstmgen.device import resolve_device
from lstmgen.errors import TrainingInterrupted
from lstmgen.files import write_checkpoint, write_json
from lstmgen.inference import Model, build_model
from lstmgen.metrics import bits_per_char
from lstmgen.run.create import Prepared, unit_of
from lstmgen.tokens import load_tokenizer
from lstmgen.training.range_test import range_test
from lstmgen.training.report import RunReporter, truncate_metrics
from lstmgen.training.trainer import Progress, Trainer


@dataclass
class TrainResult:
    """What lstmgen.train returns."""

    run_dir: Path
    stopped_because: str
    steps: int
    epochs: float
    tokens: int
    elapsed_s: float
    best_val_bits_per_char: float | None
    last_val_bits_per_char: float | None


def resume(out: Path, options: dict) -> tuple[RunConfig, bool]:
    """The run's config with the options given on resume, and whether a new peak lr was given."""
    config = RunConfig.read(out, writer=True)
    weights = out / "model.safetensors"
    progress = read_progress(weights) if weights.exists() else {}
    lr_changed = "lr" in options and options["lr"] != config.train.lr
    return config.resumed(options, progress), lr_changed


def train(
    out: Path,
    config: RunConfig,
    prepared: Prepared | None = None,
    *,
    resuming: bool,
    quiet: bool,
    lr_changed: bool = False,
) -> TrainResult:
    """Train the run in `out` as its config says; from its last checkpoint when resuming."""
    train_config = config.train
    device = resolve_device(train_config.device)
    torch.manual_seed(train_config.seed)
    if prepared is None:
        prepared = Prepared(load_tokenizer(out / "tokenizer.json"), TokenStore.open(out / "data"))
    tokenizer, store = prepared.tokenizer, prepared.store
    model = build_model(config, tokenizer)
    if prepared.vectors is not None:
        model.set_embeddings(torch.from_numpy(prepared.vectors))
    model = model.to(device)
    sampler_model = Model(model, tokenizer)

    def sampler(**settings) -> str:
        was_training = model.training
        text = sampler_model.generate("", **settings)
        model.train(was_training)
        return text  # type: ignore[return-value]

    reporter = RunReporter(
        out, sampler=sampler, quiet=quiet, tokens_per_char=config.tokens_per_char
    )
    if train_config.lr_finder and "lr_finder" not in config.records:  # or stopped during the test
        config = _find_lr(model, store, config, out, reporter)

    def save(trainer: Trainer, best: bool = False) -> None:
        save_checkpoint(out, config, tokenizer, trainer, best=best)

    trainer = Trainer(
        model, store.train, store.val, config.train, hooks=reporter, save=save, device=device
    )
    checkpoint = out / "model.safetensors"
    if resuming and not checkpoint.exists():
        truncate_metrics(out / "metrics.jsonl", 0)
        reporter.print(f"{out} has no checkpoint yet; training starts from the beginning")
    if resuming and checkpoint.exists():
        progress = Progress(**read_progress(checkpoint))
        if lr_changed:  # a new peak rate given on resume replaces the one roll-backs had lowered
            progress.lr_scale, progress.rollbacks = 1.0, 0
        load_weights(model, checkpoint)
        trainer.load_trainer_state(load_trainer_state(out / "trainer_state.pt"), progress)
        truncate_metrics(out / "metrics.jsonl", progress.step)
        reporter.print(
            f"resuming {out} at step {progress.step:,} (epoch {progress.epoch + 1}, "
            f"{progress.tokens:,} tokens seen)"
        )
    else:
        reporter.print(
            f"training {model.num_parameters():,} parameters on {len(store.train):,} "
            f"{unit_of(tokenizer)} ({len(store.val):,} held out), device {device}"
        )
    reason = trainer.fit()
    result = _result(out, trainer, reason, config.tokens_per_char)
    if reason.startswith("interrupted"):
        raise TrainingInterrupted(result)
    best = result.best_val_bits_per_char
    best_text = f"best held-out {best:.4f} bits/char" if best else "not evaluated"
    reporter.print(
        f"stopped ({reason}) after {result.steps:,} steps; {best_text}. "
        f"Generate with: lstmgen generate {out}"
    )
    return result


def _result(out: Path, trainer: Trainer, reason: str, tokens_per_char: float) -> TrainResult:
    p = trainer.progress

    def bits(nats: float | None) -> float | None:
        return None if nats is None else bits_per_char(nats, tokens_per_char)

    return TrainResult(
        run_dir=out,
        stopped_because=reason,
        steps=p.step,
        epochs=p.epoch + p.batch / max(trainer.steps_per_epoch, 1),
        tokens=p.tokens,
        elapsed_s=p.elapsed_s,
        best_val_bits_per_char=bits(p.best_val_nats),
        last_val_bits_per_char=bits(p.last_val_nats),
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


def save_checkpoint(
    out: Path, config: RunConfig, tokenizer, trainer: Trainer, *, best: bool
) -> None:
    """The latest checkpoint (weights, trainer state, config) or best/ (weights, config, tokens)."""
    progress = dict(vars(trainer.progress))
    config_json = config.to_json()

    def weights(path: Path) -> None:
        save_weights(trainer.model, path, progress)

    def config_file(path: Path) -> None:
        write_json(path, config_json)

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
            "trainer_state.pt": lambda path: save_trainer_state(trainer.trainer_state(), path),
            "config.json": config_file,
        },
    )


def info(run_dir: Path) -> dict:
    """What a run is: config, parameter count, progress, best held-out bits/char."""
    config = RunConfig.read(run_dir)
    tokenizer = load_tokenizer(run_dir / "tokenizer.json")
    module = build_model(config, tokenizer)
    weights = run_dir / "model.safetensors"
    progress = read_progress(weights) if weights.exists() else {}
    best = progress.get("best_val_nats")
    return {
        "run": str(run_dir),
        "level": config.level,
        "vocab_size": tokenizer.vocab_size,
        "parameters": module.num_parameters(),
        "model": config.model.to_dict(),
        "train": config.train.to_dict(),
        "data": config.corpus,
        "steps": progress.get("step", 0),
        "epochs": progress.get("epoch", 0),
        "tokens_seen": progress.get("tokens", 0),
        "elapsed_s": round(progress.get("elapsed_s", 0.0), 1),
        "rollbacks": progress.get("rollbacks", 0),  # times the loss diverged and training went back
        "lr_scale": progress.get("lr_scale", 1.0),
        "best_val_bits_per_char": None
        if best is None
        else bits_per_char(best, config.tokens_per_char),
        "best_val_nats_per_token": best,
        "best_step": progress.get("best_step"),
        "has_best": (run_dir / "best" / "model.safetensors").exists(),
    }
