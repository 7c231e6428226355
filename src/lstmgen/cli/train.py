"""`lstmgen train`: a new run, a resumed one, or either as several processes (--nproc)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lstmgen.cli.program import Sqlite, Threads, api, relaunch, source_specs
from lstmgen.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lstmgen.errors import LstmgenError
from lstmgen.flags import with_options

DATA = "Data"


@with_options(DataConfig, ModelConfig, TrainConfig)
def train(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="A token store made by `lstmgen prepare`, or sources as for prepare: files, "
            "folders, "
            "globs, tables, compressed files, '-' for stdin, python-docs.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Run directory to create.", rich_help_panel=DATA),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue the run in this directory exactly where it stopped.",
            rich_help_panel=DATA,
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace the run in --out (only one holding nothing else).",
            rich_help_panel=DATA,
        ),
    ] = False,
    sqlite: Sqlite = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Print no progress: only errors and the summary (on stdout)."
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the summary as one JSON object on stdout (run_dir, stopped_because, "
            "steps, best and last held-out bits/char, ...), for scripts.",
        ),
    ] = False,
    threads: Threads = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Start from the level, model and training settings of a run's config.json or "
            "a tune's best.json; options given here override them.",
            rich_help_panel=DATA,
            show_default=False,
        ),
    ] = None,
    nproc: Annotated[
        int | None,
        typer.Option(
            help="Train as this many processes on this machine (one per GPU on a GPU machine): "
            "starts torchrun with this same command. Each reads --batch-size streams.",
            rich_help_panel="Training",
            show_default=False,
        ),
    ] = None,
    options: dict | None = None,
) -> None:
    """Train a model on text; checkpoints, metrics and samples go to the run directory."""
    if nproc is not None and nproc < 1:
        raise LstmgenError(f"--nproc {nproc} must be at least 1")
    if nproc is not None and nproc > 1:
        _launch_processes(nproc, resume is None, options)
    api().use_threads(threads)
    specs = source_specs(sources, sqlite) or None
    if resume is not None:
        if out is not None and Path(out) != resume:
            raise LstmgenError("give either --resume RUN or --out RUN, not both")
        if config is not None:
            raise LstmgenError("--config starts a new run; a resumed run keeps its own settings")
        result = api().train(specs, out=resume, resume=True, quiet=quiet, **options)
    elif out is None:
        raise LstmgenError(
            "missing --out: name the run directory to create, e.g. --out runs/mytext"
        )
    else:
        result = api().train(
            specs, out=out, overwrite=overwrite, quiet=quiet, config=config, **options
        )
    if result.summary:  # only training process 0 has one
        print(json.dumps(result.to_json()) if as_json else result.summary, flush=True)


def _launch_processes(nproc: int, new_run: bool, options: dict) -> None:
    """`train --nproc N`: check the options here (one error line, not N), then run the same
    command under torchrun and end with its exit code."""
    if new_run:
        RunConfig.from_options(options)
    if options.get("lr_finder"):
        raise LstmgenError(
            "--lr-finder runs in one process: find the rate without --nproc first, "
            "then train with --lr RATE"
        )
    relaunch(nproc)
