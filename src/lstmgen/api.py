"""The Python API: lstmgen.prepare, lstmgen.train, lstmgen.load, lstmgen.info.

Each takes the same option names as the command line's flags (hidden=512, max_time="10m",
column="Text", ...), builds one config from them and hands it down; the `lstmgen` command
calls these same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from lstmgen.classification import Tallied
from lstmgen.config import DataConfig, RunConfig
from lstmgen.data.documents import labelled_documents
from lstmgen.data.prepare import prepare
from lstmgen.data.reading import Tally
from lstmgen.data.sources import as_specs
from lstmgen.data.store import TokenStore, is_token_store
from lstmgen.describe import info as run_info
from lstmgen.errors import LstmgenError, warn
from lstmgen.inference import Model, load
from lstmgen.run import TrainResult, create
from lstmgen.run import resume as resumed_config
from lstmgen.run import train as train_run
from lstmgen.threads import ask as use_threads
from lstmgen.training.distributed import joined

__all__ = ["Model", "TrainResult", "classify", "info", "load", "prepare", "train"]

Sources = str | Path | Sequence[str | Path]
BATCH_CHARACTERS = 4 << 20  # classify scores at most this much text at a time


def train(
    sources: Sources | None = None,
    *,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    threads: int | None = None,
    config: str | Path | None = None,
    on_evaluation=None,
    **options,
) -> TrainResult:
    """Train a model on sources (files, folders, tables, '-', 'python-docs', or one prepared store).

    `options` are ModelConfig, TrainConfig and DataConfig fields (hidden=512, max_time="10m",
    column="Text", ...). With resume=True, continue the run in `out` exactly where it stopped;
    only how long it goes on (epochs, max_time, max_steps, patience, ...), the device and the
    peak lr may change. `threads`: CPU threads to use (default: chosen by measuring here).
    `config`: a run's config.json (or a tune's best.json) whose level, model and training
    settings the new run starts from; `options` given here override them.
    `on_evaluation(row)`: called with each evaluation's metrics row; returning a text stops
    the run there (the text becomes stopped_because).
    Under torchrun, every process calls this alike; rank 0 prepares, writes and prints.
    """
    out = Path(out)
    use_threads(threads)
    if config is not None:
        if resume:
            raise LstmgenError("--config starts a new run; a resumed run keeps its own settings")
        settings = RunConfig.settings_in(Path(config), given=options)
        specs = as_specs(sources)
        if len(specs) == 1 and is_token_store(Path(specs[0])):
            settings.pop("level")  # a prepared store has its level already
        options = {**settings, **options}
    if resume and sources:
        raise LstmgenError("--resume continues a run on its own data; do not name sources with it")
    run_config = None if resume else RunConfig.from_options(options)
    if not resume and not as_specs(sources):
        raise LstmgenError(
            "no input given; name text files, folders, '-' for stdin, or python-docs"
        )
    with joined(out) as peers:
        made: list = []  # what rank 0 made; the other processes read it from the run directory

        def start() -> dict:
            """Rank 0's part: read the run to resume, or create it (prepare, size)."""
            if resume:
                made.extend(resumed_config(out, options))  # config, lr_changed
            else:
                made.extend(create(sources, out, run_config, overwrite=overwrite, quiet=quiet))
            return {"config": made[0].to_json(), "lr_changed": resume and made[1]}

        shared = peers.share(start)  # the other processes wait for rank 0 here
        return train_run(
            out,
            made[0] if made else RunConfig.from_json(shared["config"]),
            made[1] if made and not resume else None,  # the prepared data, read once
            resuming=resume,
            quiet=quiet,
            lr_changed=shared["lr_changed"],
            on_evaluation=on_evaluation,
            peers=peers,
        )


def info(run_dir: str | Path) -> dict:
    """What a run is: config, parameter count, progress, best held-out bits/char."""
    return run_info(Path(run_dir))


def classify(
    run: str | Path,
    sources: Sources,
    *,
    predict: str | None = None,
    positive: Sequence[str] = (),
    negative: Sequence[str] = (),
    checkpoint: str = "best",
    device: str = "auto",
    on_prediction: Callable[[dict], None] | None = None,
    batch: int = 4096,
    precision: str = "auto",
    **options,
) -> dict:
    """A conditioned run as a classifier of the documents of sources (Model.classify), with
    accuracy, macro-F1, the confusion matrix and, given positive and negative values, the ROC
    AUC where the sources have the column's labels (condition_column="Score").

    Documents are read and scored `batch` at a time (or 4 M characters, whichever comes
    first; each batch chooses its threads anew, so not fewer): each prediction (its source and row
    there, the predicted value, the label, posterior and log-likelihoods) goes to
    `on_prediction` as it is made, else into the result's "predictions". `options` are reading
    and cleaning options as for prepare (column="Text", ...); cleaning not given is the run's
    own, so documents are cleaned as its training text was. Malformed rows skipped are counted
    in "dropped" and told in a warning, as are empty documents (scored by the prior alone).
    """
    # auto keeps fp32 here: on the reviews int8 took the ROC AUC from 0.695 to 0.664 though
    # the held-out loss moved by 0.0001 bits/char (BENCHMARKS.md, issue 30): a posterior is a
    # small difference of two long sums, and int8's rounding adds up over a document
    precision = "fp32" if precision == "auto" else precision
    model = load(run, checkpoint=checkpoint, device=device, precision=precision, verbose=True)
    conditions = model.require_conditions("classify")
    recorded = TokenStore.open(Path(run) / "data").meta.get("cleaning", {})
    config = DataConfig(**{**recorded, **options})
    names = config.conditions
    if len(names) == 1 and len(conditions.columns) == 1:
        names = conditions.names  # the table may call the run's one column otherwise
    target = conditions.columns[conditions.column(predict)]
    values = list(target.values)
    tallied = Tallied(values, positive, negative)
    kept: list[dict] = []
    keep = on_prediction or kept.append
    tally, counts = Tally(), {"documents": 0, "empty": 0}
    empty_rows: list[str] = []

    def scored(documents: list) -> None:
        labels = [dict(zip(names, row, strict=True)) if row else None for *_, row in documents]
        result = model.classify([d[2] for d in documents], column=predict, labels=labels)
        truth = [
            values[target.of_document(found[target.name])]
            if found and target.name in found
            else None
            for found in labels
        ]
        tallied.add(result["posterior"], truth)
        for i, (source, row, text, _) in enumerate(documents):
            keep(
                {
                    "source": source,
                    "row": row,
                    "predicted": result["predicted"][i],
                    "label": truth[i],
                    "posterior": dict(zip(values, map(float, result["posterior"][i]), strict=True)),
                    "log_likelihood": dict(
                        zip(values, map(float, result["log_likelihood"][i]), strict=True)
                    ),
                    "characters": len(text),
                }
            )

    pending, characters = [], 0
    for document in labelled_documents(as_specs(sources), config, tally):
        counts["documents"] += 1
        if not document[2]:
            counts["empty"] += 1
            if len(empty_rows) < 3:
                empty_rows.append(f"{document[0]}: row {document[1]}")
        pending.append(document)
        characters += len(document[2])
        if len(pending) == batch or characters >= BATCH_CHARACTERS:
            scored(pending)
            pending, characters = [], 0
    if pending:
        scored(pending)
    dropped = tally.dropped()
    if not counts["documents"]:
        raise LstmgenError(
            "the sources hold no documents to classify"
            + (f" (dropped {dropped})" if dropped else "")
        )
    if dropped:
        warn(f"dropped {dropped}: not classified")
    if counts["empty"]:
        more = ", …" if counts["empty"] > len(empty_rows) else ""
        warn(
            f"{counts['empty']:,} empty document(s) ({'; '.join(empty_rows)}{more}) have no text "
            "to score: their prediction is the prior's most likely value"
        )
    return {
        "column": target.name,
        "values": values,
        "prior": dict(zip(values, target.prior, strict=True)),
        **tallied.result(),
        "documents": counts["documents"],
        "predicted": dict(zip(values, map(int, tallied.predicted), strict=True)),
        "dropped": {"malformed_rows": tally.malformed_rows, "empty": counts["empty"]},
        **({} if on_prediction else {"predictions": kept}),
    }
