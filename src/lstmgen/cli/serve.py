"""`lstmgen serve`: runs over HTTP (needs the serve extra, imported only when it runs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from lstmgen.cli.program import Checkpoint, Device, Precision, api
from lstmgen.config import API_KEY_ENV, ServeConfig
from lstmgen.errors import LstmgenError
from lstmgen.flags import with_options

ServeThreads = Annotated[
    int | None,
    typer.Option(
        help="CPU threads the batch computes with. \\[default: one or all cores but one (the "
        "HTTP side keeps a core), whichever its steps run faster on; LSTMGEN_THREADS sets it too]",
        show_default=False,
    ),
]


@with_options(ServeConfig)
def serve(
    runs: Annotated[
        list[Path], typer.Argument(help="Run directories to serve.", show_default=False)
    ],
    checkpoint: Checkpoint = "best",
    device: Device = "auto",
    precision: Precision = "auto",
    threads: ServeThreads = None,
    options: dict | None = None,
) -> None:
    """Serve runs over HTTP: an OpenAI-compatible completions API and a web page to try them."""
    settings = ServeConfig(**{"api_key": os.environ.get(API_KEY_ENV) or None, **options})
    try:  # FastAPI and uvicorn are an extra; imported here, so --help never loads them
        from lstmgen.serve import serve as run_server
    except ImportError as error:
        raise LstmgenError(
            f"lstmgen serve needs {error.name}: pip install 'lstmgen[serve]'"
        ) from None
    api().use_threads(threads)
    run_server(runs, settings, device=device, checkpoint=checkpoint, precision=precision)
