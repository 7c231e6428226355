"""`lstmgen evaluate`: a run measured on held-out text, or per condition on its own."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from lstmgen.cli.program import Device, Precision, Run, Threads, api
from lstmgen.config import ReadOptions
from lstmgen.data.sources import read_documents
from lstmgen.errors import LstmgenError


def evaluate(
    run: Run,
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Held-out text: files, folders or '-' for stdin (none with --by-condition).",
            show_default=False,
        ),
    ] = None,
    by_condition: Annotated[
        bool,
        typer.Option(
            "--by-condition",
            help="Bits/char of the run's own held-out documents, per condition (a run trained "
            "with --condition-column or --condition-field).",
        ),
    ] = False,
    condition: Annotated[
        list[str] | None,
        typer.Option(
            help="Score the text under this condition, COLUMN=VALUE (a run trained with "
            "--condition-column); repeatable. \\[default: the mixture of the first column's "
            "values by their training share]",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    checkpoint: Annotated[str, typer.Option(help="best or latest.")] = "best",
    encoding: Annotated[str, typer.Option(help="Text encoding of the sources.")] = "utf-8",
    errors: Annotated[str, typer.Option(help="strict or replace.")] = "strict",
    device: Device = "auto",
    precision: Precision = "auto",
    threads: Threads = None,
) -> None:
    """Measure a run on text it has not seen: bits/char (at every level), nats/token, perplexity."""
    if by_condition == bool(sources):
        raise LstmgenError(
            "--by-condition measures the run's own held-out documents; drop the sources"
            if sources
            else "name the held-out text to measure (files, folders or '-'), or pass "
            "--by-condition for the run's own held-out documents per condition"
        )
    if by_condition and condition:
        raise LstmgenError(
            "--by-condition scores each document under its own condition; drop --condition"
        )
    api().use_threads(threads)
    model = api().load(run, checkpoint=checkpoint, device=device, precision=precision, verbose=True)
    if by_condition:
        result = model.evaluate_by_condition()
        if as_json:
            print(json.dumps(result))
            return
        for line in condition_table(result):
            print(line)
        return
    text = read_documents(sources, ReadOptions(encoding=encoding, errors=errors))
    result = model.evaluate(text, condition=condition)
    if as_json:
        print(json.dumps(result))
        return
    print(
        f"{result['bits_per_char']:.4f} bits/char  {result['nats_per_token']:.4f} nats/token  "
        f"perplexity {result['perplexity']:.3f}  over {result['characters']:,} characters "
        f"({result['tokens']:,} {result['level']} tokens)"
    )
    if result["unknown_tokens"]:
        print(
            f"{result['unknown_tokens']:,} unknown tokens ({result['unknown_characters']:,} "
            "characters) scored as one <unk> each: what they spell costs no bits, so bits/char "
            "is flattered by that much"
        )


def condition_table(result: dict) -> list[str]:
    """The lines of `evaluate --by-condition`: held-out bits/char per value of each condition
    column, each column's table ending with all its documents."""
    lines = []
    for column in result["columns"]:
        rows, name = column["conditions"], column["column"]
        width = max(len(name), *(len(v) for v in rows), 3)
        if lines:
            lines.append("")
        lines.append(f"{name:<{width}}  {'documents':>9}  {'characters':>10}  bits/char")
        for value, row in rows.items():
            bits = "-" if row["bits_per_char"] is None else f"{row['bits_per_char']:.4f}"
            lines.append(
                f"{value:<{width}}  {row['documents']:>9,}  {row['characters']:>10,}  {bits}"
            )
        documents = sum(row["documents"] for row in rows.values())
        lines.append(
            f"{'all':<{width}}  {documents:>9,}  {result['characters']:>10,}  "
            f"{result['bits_per_char']:.4f}"
        )
    return lines
