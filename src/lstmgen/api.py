"""The Python API: lstmgen.prepare, lstmgen.train, lstmgen.load, lstmgen.info.

Each takes the same option names as the command line's flags (hidden=512, max_time="10m",
column="Text", ...), builds one config from them and hands it down; the `lstmgen` command
calls these same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lstmgen.config import RunConfig
from lstmgen.data.prepare import prepare
from lstmgen.data.store import is_token_store
from lstmgen.describe import info as run_info
from lstmgen.errors import LstmgenError
from lstmgen.inference import Model, load
from lstmgen.run import TrainResult, create
from lstmgen.run import resume as resumed_config
from lstmgen.run import train as train_run
from lstmgen.threads import ask as use_threads

__all__ = ["Model", "TrainResult", "info", "load", "prepare", "train"]

Sources = str | Path | Sequence[str | Path]


def train(
    sources: Sources | None = None,
    *,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    threads: int | None = None,
    config: str | Path | None = None,
    on_evaluation=None,
    **options,
) -> TrainResult:
    """Train a model on sources (files, folders, tables, '-', 'python-docs', or one prepared store).

    `options` are ModelConfig, TrainConfig and DataConfig fields (hidden=512, max_time="10m",
    column="Text", ...). With resume=True, continue the run in `out` exactly where it stopped;
    only how long it goes on (epochs, max_time, max_steps, patience, ...), the device and the
    peak lr may change. `threads`: CPU threads to use (default: chosen by measuring here).
    `config`: a run's config.json (or a tune's best.json) whose level, model and training
    settings the new run starts from; `options` given here override them.
    `on_evaluation(row)`: called with each evaluation's metrics row; returning a text stops
    the run there (the text becomes stopped_because).
    """
    out = Path(out)
    use_threads(threads)
    if config is not None:
        if resume:
            raise LstmgenError("--config starts a new run; a resumed run keeps its own settings")
        settings = RunConfig.settings_in(Path(config), given=options)
        specs = [sources] if isinstance(sources, (str, Path)) else list(sources or [])
        if len(specs) == 1 and is_token_store(Path(specs[0])):
            settings.pop("level")  # a prepared store has its level already
        options = {**settings, **options}
    if resume:
        if sources:
            raise LstmgenError(
                "--resume continues a run on its own data; do not name sources with it"
            )
        config, lr_changed = resumed_config(out, options)
        return train_run(
            out,
            config,
            resuming=True,
            quiet=quiet,
            lr_changed=lr_changed,
            on_evaluation=on_evaluation,
        )
    run_config = RunConfig.from_options(options)
    if sources is None or (not isinstance(sources, (str, Path)) and not list(sources)):
        raise LstmgenError(
            "no input given; name text files, folders, '-' for stdin, or python-docs"
        )
    run_config, prepared = create(sources, out, run_config, overwrite=overwrite, quiet=quiet)
    return train_run(
        out, run_config, prepared, resuming=False, quiet=quiet, on_evaluation=on_evaluation
    )


def info(run_dir: str | Path) -> dict:
    """What a run is: config, parameter count, progress, best held-out bits/char."""
    return run_info(Path(run_dir))
