"""`lstmgen classify`: a conditioned run as a classifier of documents (Bayes' rule)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from lstmgen.classification import groups
from lstmgen.cli.program import Checkpoint, Device, Precision, Run, Sources, Sqlite, Threads, api
from lstmgen.config import CleanOptions, ReadOptions
from lstmgen.errors import LstmgenError, say
from lstmgen.flags import with_options

CLASSIFY = "Classifying"
FORMATS = ("text", "json", "jsonl")


@with_options(ReadOptions, CleanOptions)
def classify(
    run: Run,
    sources: Sources = None,
    predict: Annotated[
        str | None,
        typer.Option(
            help="The condition column to predict \\[default: the run's first].",
            rich_help_panel=CLASSIFY,
            show_default=False,
        ),
    ] = None,
    positive: Annotated[
        str | None,
        typer.Option(
            help="Values that make the positive group, e.g. 4,5: adds the ROC AUC of positive "
            "against --negative.",
            rich_help_panel=CLASSIFY,
            show_default=False,
        ),
    ] = None,
    negative: Annotated[
        str | None,
        typer.Option(
            help="Values that make the negative group, e.g. 1,2.",
            rich_help_panel=CLASSIFY,
            show_default=False,
        ),
    ] = None,
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="text (the scores), json (one object: the scores and every document's "
            "prediction) or jsonl (one prediction a line, as each is made; the scores on "
            "stderr). Each prediction names its source and row there.",
        ),
    ] = "text",
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    sqlite: Sqlite = None,
    checkpoint: Checkpoint = "best",
    device: Device = "auto",
    precision: Precision = "auto",
    threads: Threads = None,
    options: dict | None = None,
) -> None:
    """Predict each document's condition with a run trained with --condition-column; with the
    column in the sources, report accuracy, macro-F1 and the confusion matrix."""
    output_format = "json" if as_json else output_format
    if output_format not in FORMATS:
        raise LstmgenError(f"--format {output_format!r} must be one of: {', '.join(FORMATS)}")
    api().use_threads(threads)
    specs = [*(sources or []), *([str(sqlite)] if sqlite is not None else [])]
    written = 0

    def write(prediction: dict) -> None:  # as each is made: nothing held but the scores
        nonlocal written
        if output_format == "json":
            sys.stdout.write(
                ('{"predictions": [' if not written else ", ") + json.dumps(prediction)
            )
        else:
            sys.stdout.write(json.dumps(prediction) + "\n")
        written += 1

    result = api().classify(
        run,
        specs,
        predict=predict,
        positive=groups(positive),
        negative=groups(negative),
        checkpoint=checkpoint,
        device=device,
        on_prediction=(lambda prediction: None) if output_format == "text" else write,
        precision=precision,
        **options,
    )
    if output_format == "json":  # the object's other fields after its predictions
        print(("], " if written else '{"predictions": [], ') + json.dumps(result)[1:])
        return
    for line in classify_report(result):
        say(line) if output_format == "jsonl" else print(line)


def classify_report(result: dict) -> list[str]:
    """The lines `lstmgen classify` prints: the scores, then the confusion matrix."""
    values, documents = result["values"], result["documents"]
    counts = ", ".join(f"{v} {result['predicted'][v]:,}" for v in values)
    skipped = result.get("dropped", {}).get("malformed_rows", 0)
    rows = "row" if skipped == 1 else "rows"
    dropped = f" ({skipped:,} malformed {rows} dropped)" if skipped else ""
    lines = [f"{documents:,} documents{dropped}; predicted {result['column']}: {counts}"]
    if result["accuracy"] is None:
        return lines + ["(no labels in the sources: give --condition-column to score them)"]
    lines.append(
        f"accuracy {result['accuracy']:.3f}  macro-F1 {result['macro_f1']:.3f}"
        + (f"  ROC AUC {result['auc']:.3f}" if result.get("auc") is not None else "")
        + f"  over {sum(map(sum, result['confusion'])):,} labelled documents"
    )
    corner = "label ↓ predicted →"
    width, cell = max(len(corner), *map(len, values)), max(6, *map(len, values))
    lines.append(f"{corner:<{width}}  " + "  ".join(f"{v:>{cell}}" for v in values))
    for value, row in zip(values, result["confusion"], strict=True):
        lines.append(f"{value:<{width}}  " + "  ".join(f"{n:>{cell},}" for n in row))
    return lines
