"""`lstmgen prepare`: text into a token store, the step before `lstmgen train STORE`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lstmgen.cli.program import Sources, Sqlite, source_specs
from lstmgen.config import DataConfig
from lstmgen.data.prepare import prepare as prepare_store
from lstmgen.errors import LstmgenError
from lstmgen.flags import with_options


@with_options(DataConfig)
def prepare(
    sources: Sources = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Token store folder to create.", show_default=False),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace the token store in --out (only one holding nothing else).",
        ),
    ] = False,
    sqlite: Sqlite = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line.")
    ] = False,
    options: dict | None = None,
) -> None:
    """Prepare text into a token store (train.bin, val.bin, meta.json) for `lstmgen train STORE`."""
    if out is None:
        raise LstmgenError(
            "missing --out: name the token store folder to create, e.g. --out data/mytext"
        )
    specs = source_specs(sources, sqlite)
    prepare_store(specs, out=out, overwrite=overwrite, quiet=quiet, **options)
