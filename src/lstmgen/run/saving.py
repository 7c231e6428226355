"""A run's checkpoints: writing them (the latest, and best/), and reading a run back to resume
it (its config with the options given again, its tokenizer and token store)."""

from __future__ import annotations

import os
from pathlib import Path

from lstmgen.checkpoint import save_trainer_state, save_weights
from lstmgen.config import RunConfig
from lstmgen.data.store import TokenStore
from lstmgen.errors import LstmgenError
from lstmgen.files import DiskFull, locked, read_progress, write_checkpoint, write_json
from lstmgen.run.create import Prepared
from lstmgen.tokens import load_tokenizer
from lstmgen.training.distributed import Peers
from lstmgen.training.trainer import Trainer


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


def open_prepared(out: Path, peers: Peers) -> Prepared:
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

    def weights(path: Path) -> None:
        save_weights(trainer.average.weights(), path, progress)  # the average, once begun

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
