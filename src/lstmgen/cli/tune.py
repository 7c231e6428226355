"""`lstmgen tune`: a search for the settings that train best on the user's text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lstmgen.cli.program import Sources, Sqlite, Threads, api, source_specs
from lstmgen.config import DataConfig
from lstmgen.errors import LstmgenError, say
from lstmgen.flags import with_options

TUNING = "Search"


@with_options(DataConfig)
def tune(
    sources: Sources = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Tune directory to create.", rich_help_panel=TUNING),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue the search in this tune directory (its finished trials are kept).",
            rich_help_panel=TUNING,
        ),
    ] = None,
    trial_time: Annotated[
        str | None,
        typer.Option(help="Training time of each trial, e.g. 60s.", rich_help_panel=TUNING),
    ] = None,
    trial_steps: Annotated[
        int | None,
        typer.Option(
            help="Optimizer steps of each trial (instead of --trial-time; reproducible).",
            rich_help_panel=TUNING,
        ),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(
            help="Trials to finish (pruned ones count) \\[default: 20 without --timeout].",
            rich_help_panel=TUNING,
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            help="Stop starting trials after this much time over all sessions, e.g. 2h.",
            rich_help_panel=TUNING,
        ),
    ] = None,
    space: Annotated[
        Path | None,
        typer.Option(
            help="A TOML file of ranges to search instead of the default space.",
            rich_help_panel=TUNING,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of the search \\[default: 0].", rich_help_panel=TUNING),
    ] = None,
    sqlite: Sqlite = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only errors and the best trial.")
    ] = False,
    threads: Threads = None,
    options: dict | None = None,
) -> None:
    """Search for the settings that reach the lowest held-out bits/char on your text."""
    from lstmgen.tuning import tune as search

    api().use_threads(threads)
    specs = source_specs(sources, sqlite) or None
    if resume is not None:
        fixed = (trial_time, trial_steps, space, seed)
        if specs or options or out not in (None, resume) or any(v is not None for v in fixed):
            raise LstmgenError(
                "--resume continues a search as it was set up; only --trials and --timeout "
                "may be given with it"
            )
        best = search(out=resume, resume=True, trials=trials, timeout=timeout, quiet=quiet)
    else:
        if out is None:
            raise LstmgenError("missing --out: name the tune directory, e.g. --out tunes/mytext")
        best = search(
            specs,
            out=out,
            trial_time=trial_time,
            trial_steps=trial_steps,
            trials=trials,
            timeout=timeout,
            space=space,
            seed=seed or 0,
            quiet=quiet,
            **options,
        )
    if quiet:
        say(f"best: trial {best['trial']}, {best['bits_per_char']:.4f} bits/char")
