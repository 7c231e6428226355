"""`lstmgen evaluate`: a run measured on held-out text, or per condition on its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lstmgen.cli.program import Device, Precision, Run, Threads, api
from lstmgen.config import ReadOptions
from lstmgen.data.documents import read_documents, text_pieces
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
    novelty: Annotated[
        bool,
        typer.Option(
            "--novelty",
            help="How much of the text stands in the run's training text: its longest copy "
            "(characters) and the share of its 50-character windows found there.",
        ),
    ] = False,
    build_index: Annotated[
        bool,
        typer.Option(
            "--build-index",
            help="Build the copy index of --novelty and --max-copy even above 2 GB of "
            "training text (8 bytes a byte on disk); with no sources, only build it.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    checkpoint: Annotated[str, typer.Option(help="best or latest.")] = "best",
    encoding: Annotated[str, typer.Option(help="Text encoding of the sources.")] = "utf-8",
    errors: Annotated[str, typer.Option(help="strict or replace.")] = "strict",
    device: Device = "auto",
    precision: Precision = "auto",
    threads: Threads = None,
) -> None:
    """Measure a run on text it has not seen: bits/char (at every level), nats/token, perplexity."""
    if novelty or build_index:
        novelty_of(
            run, sources, ReadOptions(encoding=encoding, errors=errors), as_json, build_index
        )
        return
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
    pieces = text_pieces(sources, ReadOptions(encoding=encoding, errors=errors))
    result = model.evaluate(pieces, condition=condition)  # read as it is scored
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


def novelty_of(run, sources, read: ReadOptions, as_json: bool, allow_large: bool) -> None:
    """`evaluate --novelty`: the copy figures of the text against the run's training text (the
    index is built when missing); no model is loaded."""
    from lstmgen.data.novelty import index_of_store, novelty, training_indexes

    if not sources:
        index_of_store(Path(run) / "data", allow_large=True)  # --build-index alone
        return
    indexes = training_indexes(Path(run), allow_large=allow_large)
    text = read_documents(sources, read)
    result = {"characters": len(text), **novelty(text, indexes), "indexes": len(indexes)}
    if as_json:
        print(json.dumps(result))
        return
    share = "-" if result["copied_50"] is None else f"{result['copied_50']:.2%}"
    print(
        f"longest copy {result['longest_copy']:,} characters  copied_50 {share}  "
        f"over {result['characters']:,} characters"
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
