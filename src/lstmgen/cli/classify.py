"""`lstmgen classify`: a conditioned run as a classifier of documents (Bayes' rule)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from lstmgen.classification import groups
from lstmgen.cli.program import Checkpoint, Device, Precision, Run, Sources, Sqlite, Threads, api
from lstmgen.config import CleanOptions, ReadOptions
from lstmgen.flags import with_options

CLASSIFY = "Classifying"


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
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object, with every document's posterior."),
    ] = False,
    sqlite: Sqlite = None,
    checkpoint: Checkpoint = "best",
    device: Device = "auto",
    precision: Precision = "auto",
    threads: Threads = None,
    options: dict | None = None,
) -> None:
    """Predict each document's condition with a run trained with --condition-column; with the
    column in the sources, report accuracy, macro-F1 and the confusion matrix."""
    api().use_threads(threads)
    specs = [*(sources or []), *([str(sqlite)] if sqlite is not None else [])]
    result = api().classify(
        run,
        specs,
        predict=predict,
        positive=groups(positive),
        negative=groups(negative),
        checkpoint=checkpoint,
        device=device,
        precision=precision,
        **options,
    )
    if as_json:
        print(json.dumps(result))
        return
    for line in classify_report(result):
        print(line)


def classify_report(result: dict) -> list[str]:
    """The lines `lstmgen classify` prints: the scores, then the confusion matrix."""
    values, documents = result["values"], result["documents"]
    predicted = [p["predicted"] for p in result["predictions"]]
    counts = ", ".join(f"{v} {predicted.count(v):,}" for v in values)
    lines = [f"{documents:,} documents; predicted {result['column']}: {counts}"]
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
