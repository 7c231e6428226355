"""`lstmgen generate`: text from a trained run, streamed as plain text, jsonl or at a prompt."""

from __future__ import annotations

from typing import Annotated

import typer

from lstmgen.cli.program import Checkpoint, Device, Precision, Run, Threads, api
from lstmgen.config import SampleConfig
from lstmgen.console import interact, unescape, write_jsonl, write_text
from lstmgen.errors import LstmgenError
from lstmgen.flags import with_options

OUTPUT = "Output"


@with_options(SampleConfig)
def generate(
    run: Run,
    prime: Annotated[
        str,
        typer.Option(
            help="Text to start from (the model continues it); \\n, \\t and \\\\ are a newline, "
            "a tab and a backslash.",
            rich_help_panel="Sampling",
        ),
    ] = "",
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="text, or jsonl: one JSON object per sample, in sample order (prime, text, "
            "end, characters, tokens, their rates per second, settings).",
            rich_help_panel=OUTPUT,
        ),
    ] = "text",
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive",
            "-i",
            help="Prompt for primes and stream each continuation; :help lists commands.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    checkpoint: Checkpoint = "best",
    device: Device = "auto",
    precision: Precision = "auto",
    threads: Threads = None,
    options: dict | None = None,
) -> None:
    """Generate text from a trained run; it streams to stdout as it is made."""
    if output_format not in ("text", "jsonl"):
        raise LstmgenError(f"--format {output_format!r} must be text or jsonl")
    settings = SampleConfig(**options)  # checked before the model loads
    prime = unescape(prime)  # as --stop: \n is a newline
    if interactive and (prime or settings.num_samples != 1 or output_format != "text"):
        raise LstmgenError(
            "--interactive takes each prime at its prompt and prints one sample as "
            "text; drop --prime, --num-samples and --format"
        )
    api().use_threads(threads)
    model = api().load(run, checkpoint=checkpoint, device=device, precision=precision, verbose=True)
    if interactive:
        interact(model, settings)
    elif output_format == "jsonl":
        write_jsonl(model, prime, settings)
    else:
        write_text(model, prime, settings)
