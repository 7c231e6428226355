"""`lstmgen export`: a run as ONNX (with its tokenizer and settings) or as a web page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lstmgen.cli.program import Checkpoint, Run


def export(
    run: Run,
    out: Annotated[
        Path,
        typer.Option(help="The folder to write (made whole or not at all).", show_default=False),
    ],
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="onnx: model.onnx, tokenizer.json and lstmgen-model.json; web: those and a page "
            "(index.html) that generates in the browser with onnxruntime-web.",
        ),
    ] = "onnx",
    quantize: Annotated[
        str,
        typer.Option(help="none, or int8: onnxruntime's dynamic quantization (a smaller file)."),
    ] = "none",
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace an earlier export in --out (only one holding nothing else).",
        ),
    ] = False,
    runtime_dir: Annotated[
        Path | None,
        typer.Option(
            help="web: the folder holding onnxruntime-web's files (its npm package's dist/). "
            "\\[default: build/npm/ or node_modules/, or lstmgen's cache, where npm "
            "installs it when none has it]",
            show_default=False,
        ),
    ] = None,
    runtime_url: Annotated[
        str | None,
        typer.Option(
            help="web: load onnxruntime-web from this URL (a CDN) instead of copying it in.",
            show_default=False,
        ),
    ] = None,
    checkpoint: Checkpoint = "best",
) -> None:
    """Export a run to run without lstmgen: ONNX, or a web page that writes in the browser."""
    from lstmgen.export import export as export_run

    written = export_run(
        run,
        out=out,
        format=output_format,
        checkpoint=checkpoint,
        quantize=quantize,
        overwrite=overwrite,
        runtime_dir=runtime_dir,
        runtime_url=runtime_url,
    )
    total = sum(written["files"].values())
    print(f"exported {run} as {output_format} to {out}: {total:,} bytes")
    for name, size in written["files"].items():
        print(f"  {name:<34} {size:>12,} bytes")
