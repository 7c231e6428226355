"""The `lstmgen` command: parse options, call the library, print. No logic the Python API lacks."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import LstmgenError

try:  # newer typer carries its own copy of click
    from typer import TyperException as CommandLineError
except ImportError:  # pragma: no cover - older typer on top of click
    from click import ClickException as CommandLineError

app = typer.Typer(
    name="lstmgen",
    help="Train LSTM language models on any text and generate new text from them.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _default(cls_name: str, name: str) -> str:
    """The dataclass default of a field, for help texts (one source of truth for defaults)."""
    if cls_name == "prepare":
        from .preparation import PrepareConfig as cls
    else:
        from .generate import SampleConfig
        from .model import ModelConfig
        from .train import TrainConfig

        cls = {"model": ModelConfig, "train": TrainConfig, "sample": SampleConfig}[cls_name]
    value = next(f.default for f in fields(cls) if f.name == name)
    value = repr(value)[1:-1] if isinstance(value, str) and "\n" in value else value
    return f"\\[default: {value}]"


def _given(**options) -> dict:
    return {k: v for k, v in options.items() if v is not None}


MODEL = "Model"
TRAINING = "Training"
DATA = "Data"
READING = "Reading sources"
CLEANING = "Cleaning"
STORE = "Token store"

# The preparation options, shared by `prepare` and `train` (given raw sources); None = PrepareConfig's default.
Sqlite = Annotated[Optional[Path], typer.Option(help="A SQLite database to read (with --query, or --table and --column).", rich_help_panel=READING, show_default=False)]
Include = Annotated[Optional[list[str]], typer.Option(help="Only files matching this glob pattern (in folders, globs, zips); repeatable.", rich_help_panel=READING, show_default=False)]
Exclude = Annotated[Optional[list[str]], typer.Option(help="Leave out files matching this glob pattern; repeatable.", rich_help_panel=READING, show_default=False)]
Column = Annotated[Optional[str], typer.Option(help="Table column holding the text (CSV/TSV, Parquet, SQLite); one document per row.", rich_help_panel=READING, show_default=False)]
Field = Annotated[Optional[str], typer.Option(help="JSON Lines field holding the text; dotted for nested (review.body).", rich_help_panel=READING, show_default=False)]
Delimiter = Annotated[Optional[str], typer.Option(help="CSV delimiter (\\t for tab). \\[default: from the extension: .csv , .tsv tab]", rich_help_panel=READING, show_default=False)]
Query = Annotated[Optional[str], typer.Option(help="SQLite query; its first column (or --column) is the text.", rich_help_panel=READING, show_default=False)]
Table = Annotated[Optional[str], typer.Option(help="SQLite table to read --column from.", rich_help_panel=READING, show_default=False)]
Strict = Annotated[bool, typer.Option("--strict", help="Stop at a malformed table row instead of skipping and counting it.", rich_help_panel=READING)]
Encoding = Annotated[Optional[str], typer.Option(help=f"Text encoding of the sources. {_default('prepare', 'encoding')}", rich_help_panel=READING, show_default=False)]
Errors = Annotated[Optional[str], typer.Option(help=f"On undecodable bytes: strict (stop) or replace. {_default('prepare', 'errors')}", rich_help_panel=READING, show_default=False)]
StripHtml = Annotated[bool, typer.Option("--strip-html", help="Drop HTML tags (<br />, <p> become line breaks), unescape &amp; etc.", rich_help_panel=CLEANING)]
Normalize = Annotated[Optional[str], typer.Option(help="Unicode normal form: nfkc, nfc, nfkd or nfd.", rich_help_panel=CLEANING, show_default=False)]
Lower = Annotated[bool, typer.Option("--lower", help="Lower-case all text.", rich_help_panel=CLEANING)]
StripControl = Annotated[bool, typer.Option("--strip-control", help="Remove control characters other than tab and newline.", rich_help_panel=CLEANING)]
CollapseWhitespace = Annotated[bool, typer.Option("--collapse-whitespace", help="Runs of spaces become one, no spaces at line ends, at most one blank line.", rich_help_panel=CLEANING)]
MinChars = Annotated[Optional[int], typer.Option(help="Drop documents shorter than this (after cleaning).", rich_help_panel=CLEANING, show_default=False)]
Dedupe = Annotated[bool, typer.Option("--dedupe", help="Drop documents identical to an earlier one.", rich_help_panel=CLEANING)]
DocSeparator = Annotated[Optional[str], typer.Option(help=f"Written between documents (\\n for a newline). {_default('prepare', 'doc_separator')}", rich_help_panel=STORE, show_default=False)]
ValFraction = Annotated[Optional[float], typer.Option(help=f"Share of the characters held out for validation. {_default('prepare', 'val_fraction')}", rich_help_panel=STORE, show_default=False)]
Split = Annotated[Optional[str], typer.Option(help=f"Held out: documents (whole ones), tail (the end), or auto (documents when there are many). {_default('prepare', 'split')}", rich_help_panel=STORE, show_default=False)]
MaxVocab = Annotated[Optional[int], typer.Option(help="Keep only the most frequent characters (words), the unknown token included. \\[default: all characters; 20000 words]", rich_help_panel=STORE, show_default=False)]
MinCount = Annotated[Optional[int], typer.Option(help=f"Characters (words) seen fewer times become the unknown token. {_default('prepare', 'min_count')}", rich_help_panel=STORE, show_default=False)]
Level = Annotated[Optional[str], typer.Option(help=f"What a token is: char, word (words, punctuation, newlines) or bpe (byte-level subwords). {_default('prepare', 'level')}", rich_help_panel=STORE, show_default=False)]
VocabSize = Annotated[Optional[int], typer.Option(help=f"Subword pieces of --level bpe. {_default('prepare', 'vocab_size')}", rich_help_panel=STORE, show_default=False)]


def _prepare_options(*, include, exclude, strict, strip_html, lower, strip_control, collapse_whitespace, dedupe, **options) -> dict:
    """The preparation options the user gave (flags only when set), as PrepareConfig keyword arguments."""
    flags = dict(strict=strict, strip_html=strip_html, lower=lower, strip_control=strip_control,
                 collapse_whitespace=collapse_whitespace, dedupe=dedupe)
    given = _given(**options, include=tuple(include) if include else None, exclude=tuple(exclude) if exclude else None)
    return {**given, **{k: True for k, v in flags.items() if v}}


@app.command()
def prepare(
    sources: Annotated[Optional[list[str]], typer.Argument(help="Files, folders, globs, tables (.csv .tsv .jsonl .parquet, SQLite), compressed files (.gz .bz2 .xz .zst .zip), '-' for stdin, or python-docs.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Token store folder to create.", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the token store already in --out.")] = False,
    sqlite: Sqlite = None, include: Include = None, exclude: Exclude = None, column: Column = None, field: Field = None,
    delimiter: Delimiter = None, query: Query = None, table: Table = None, strict: Strict = False, encoding: Encoding = None,
    errors: Errors = None, strip_html: StripHtml = False, normalize: Normalize = None, lower: Lower = False,
    strip_control: StripControl = False, collapse_whitespace: CollapseWhitespace = False, min_chars: MinChars = None,
    dedupe: Dedupe = False, doc_separator: DocSeparator = None, val_fraction: ValFraction = None, split: Split = None,
    max_vocab: MaxVocab = None, min_count: MinCount = None, level: Level = None, vocab_size: VocabSize = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line.")] = False,
) -> None:
    """Prepare text into a token store (train.bin, val.bin, meta.json) that `lstmgen train STORE` reads."""
    from .preparation import prepare as prepare_store

    options = _prepare_options(
        include=include, exclude=exclude, column=column, field=field, delimiter=delimiter, query=query, table=table,
        strict=strict, encoding=encoding, errors=errors, strip_html=strip_html, normalize=normalize, lower=lower,
        strip_control=strip_control, collapse_whitespace=collapse_whitespace, min_chars=min_chars, dedupe=dedupe,
        doc_separator=doc_separator, val_fraction=val_fraction, split=split, max_vocab=max_vocab, min_count=min_count,
        level=level, vocab_size=vocab_size,
    )
    if out is None:
        raise LstmgenError("missing --out: name the token store folder to create, e.g. --out data/mytext")
    specs = [*(sources or []), *([str(sqlite)] if sqlite is not None else [])]
    prepare_store(specs, out=out, overwrite=overwrite, quiet=quiet, **options)


@app.command()
def train(
    sources: Annotated[Optional[list[str]], typer.Argument(help="A token store made by `lstmgen prepare`, or sources as for prepare: files, folders, globs, tables, compressed files, '-' for stdin, python-docs.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory to create.", rich_help_panel=DATA)] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this directory exactly where it stopped.", rich_help_panel=DATA)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run already in --out.", rich_help_panel=DATA)] = False,
    sqlite: Sqlite = None, include: Include = None, exclude: Exclude = None, column: Column = None, field: Field = None,
    delimiter: Delimiter = None, query: Query = None, table: Table = None, strict: Strict = False, encoding: Encoding = None,
    errors: Errors = None, strip_html: StripHtml = False, normalize: Normalize = None, lower: Lower = False,
    strip_control: StripControl = False, collapse_whitespace: CollapseWhitespace = False, min_chars: MinChars = None,
    dedupe: Dedupe = False, doc_separator: DocSeparator = None, val_fraction: ValFraction = None, split: Split = None,
    max_vocab: MaxVocab = None, min_count: MinCount = None, level: Level = None, vocab_size: VocabSize = None,
    layers: Annotated[Optional[int], typer.Option(help=f"LSTM layers. {_default('model', 'layers')}", rich_help_panel=MODEL, show_default=False)] = None,
    hidden: Annotated[Optional[int], typer.Option(help=f"Hidden units per layer. {_default('model', 'hidden')}", rich_help_panel=MODEL, show_default=False)] = None,
    embedding: Annotated[Optional[int], typer.Option(help=f"Embedding size. {_default('model', 'embedding')}", rich_help_panel=MODEL, show_default=False)] = None,
    dropout: Annotated[Optional[float], typer.Option(help=f"Dropout. {_default('model', 'dropout')}", rich_help_panel=MODEL, show_default=False)] = None,
    locked_dropout: Annotated[Optional[bool], typer.Option("--locked-dropout/--no-locked-dropout", help=f"One dropout mask per sequence (AWD-LSTM). {_default('model', 'locked_dropout')}", rich_help_panel=MODEL, show_default=False)] = None,
    embed_dropout: Annotated[Optional[float], typer.Option(help=f"Drop whole embedding rows (AWD-LSTM). {_default('model', 'embed_dropout')}", rich_help_panel=MODEL, show_default=False)] = None,
    weight_drop: Annotated[Optional[float], typer.Option(help=f"DropConnect on hidden-to-hidden weights (AWD-LSTM). {_default('model', 'weight_drop')}", rich_help_panel=MODEL, show_default=False)] = None,
    activation_reg: Annotated[Optional[float], typer.Option(help=f"AR: penalise large LSTM outputs by this weight (AWD-LSTM uses 2). {_default('model', 'activation_reg')}", rich_help_panel=MODEL, show_default=False)] = None,
    temporal_reg: Annotated[Optional[float], typer.Option(help=f"TAR: penalise step-to-step change of the outputs (AWD-LSTM uses 1). {_default('model', 'temporal_reg')}", rich_help_panel=MODEL, show_default=False)] = None,
    cell: Annotated[Optional[str], typer.Option(help=f"lstm or gru. {_default('model', 'cell')}", rich_help_panel=MODEL, show_default=False)] = None,
    tie_weights: Annotated[Optional[bool], typer.Option("--tie-weights/--no-tie-weights", help=f"Share embedding and output weights. {_default('model', 'tie_weights')}", rich_help_panel=MODEL, show_default=False)] = None,
    embeddings: Annotated[Optional[Path], typer.Option(help="Word vectors to start from (GloVe text, word2vec text or binary; --level word); the embedding size follows the file.", rich_help_panel=MODEL, show_default=False)] = None,
    freeze_embeddings: Annotated[bool, typer.Option("--freeze-embeddings", help="Keep the --embeddings vectors fixed during training.", rich_help_panel=MODEL)] = False,
    batch_size: Annotated[Optional[int], typer.Option(help=f"Parallel streams per batch. {_default('train', 'batch_size')}", rich_help_panel=TRAINING, show_default=False)] = None,
    seq_len: Annotated[Optional[int], typer.Option(help=f"Back-propagation steps per batch. {_default('train', 'seq_len')}", rich_help_panel=TRAINING, show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option(help=f"Peak learning rate. {_default('train', 'lr')}", rich_help_panel=TRAINING, show_default=False)] = None,
    lr_finder: Annotated[bool, typer.Option("--lr-finder", help="Pick the peak learning rate by a short range test before training (instead of --lr).", rich_help_panel=TRAINING)] = False,
    weight_decay: Annotated[Optional[float], typer.Option(help=f"AdamW weight decay (matrices only). {_default('train', 'weight_decay')}", rich_help_panel=TRAINING, show_default=False)] = None,
    warmup_steps: Annotated[Optional[int], typer.Option(help=f"Linear warm-up steps before the cosine decay. {_default('train', 'warmup_steps')}", rich_help_panel=TRAINING, show_default=False)] = None,
    min_lr_fraction: Annotated[Optional[float], typer.Option(help=f"The decay ends at this fraction of --lr. {_default('train', 'min_lr_fraction')}", rich_help_panel=TRAINING, show_default=False)] = None,
    grad_clip: Annotated[Optional[float], typer.Option(help=f"Clip the gradient norm to this. {_default('train', 'grad_clip')}", rich_help_panel=TRAINING, show_default=False)] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Total epochs of the run. \\[default: 10 when neither --max-time nor --max-steps is given]", rich_help_panel=TRAINING, show_default=False)] = None,
    max_time: Annotated[Optional[str], typer.Option(help="Total training time of the run, e.g. 90s, 10m, 2h.", rich_help_panel=TRAINING, show_default=False)] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Total optimizer steps of the run.", rich_help_panel=TRAINING, show_default=False)] = None,
    patience: Annotated[Optional[int], typer.Option(help="Stop after this many evaluations without improvement.", rich_help_panel=TRAINING, show_default=False)] = None,
    eval_every: Annotated[Optional[str], typer.Option(help="Also evaluate this often, e.g. 2m (always at each epoch's end).", rich_help_panel=TRAINING, show_default=False)] = None,
    save_every: Annotated[Optional[str], typer.Option(help=f"Also checkpoint this often within long epochs. {_default('train', 'save_every')}", rich_help_panel=TRAINING, show_default=False)] = None,
    sample_length: Annotated[Optional[int], typer.Option(help=f"Tokens (characters at char level) per sample shown after each epoch. {_default('train', 'sample_length')}", rich_help_panel=TRAINING, show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help=f"Random seed. {_default('train', 'seed')}", rich_help_panel=TRAINING, show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option(help=f"auto, cpu, cuda, cuda:N or mps. {_default('train', 'device')}", rich_help_panel=TRAINING, show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the final line.")] = False,
) -> None:
    """Train a model on text; checkpoints, metrics and samples go to the run directory."""
    from .api import train as train_run

    options = _given(
        layers=layers, hidden=hidden, embedding=embedding, dropout=dropout, cell=cell, tie_weights=tie_weights,
        embeddings=str(embeddings) if embeddings is not None else None, freeze_embeddings=freeze_embeddings or None,
        locked_dropout=locked_dropout, embed_dropout=embed_dropout, weight_drop=weight_drop,
        activation_reg=activation_reg, temporal_reg=temporal_reg,
        batch_size=batch_size, seq_len=seq_len, lr=lr, lr_finder=lr_finder or None, weight_decay=weight_decay, warmup_steps=warmup_steps,
        min_lr_fraction=min_lr_fraction, grad_clip=grad_clip, save_every=save_every, sample_length=sample_length, epochs=epochs, max_time=max_time, max_steps=max_steps,
        patience=patience, eval_every=eval_every, seed=seed, device=device,
    )
    options |= _prepare_options(
        include=include, exclude=exclude, column=column, field=field, delimiter=delimiter, query=query, table=table,
        strict=strict, encoding=encoding, errors=errors, strip_html=strip_html, normalize=normalize, lower=lower,
        strip_control=strip_control, collapse_whitespace=collapse_whitespace, min_chars=min_chars, dedupe=dedupe,
        doc_separator=doc_separator, val_fraction=val_fraction, split=split, max_vocab=max_vocab, min_count=min_count,
        level=level, vocab_size=vocab_size,
    )
    sources = [*(sources or []), *([str(sqlite)] if sqlite is not None else [])] or None
    if resume is not None:
        if out is not None and Path(out) != resume:
            raise LstmgenError("give either --resume RUN or --out RUN, not both")
        train_run(sources, out=resume, resume=True, quiet=quiet, **options)
        return
    if out is None:
        raise LstmgenError("missing --out: name the run directory to create, e.g. --out runs/mytext")
    train_run(sources, out=out, overwrite=overwrite, quiet=quiet, **options)


SAMPLING = "Sampling"
OUTPUT = "Output"


@app.command()
def generate(
    run: Annotated[Path, typer.Argument(help="Run directory.", show_default=False)],
    prime: Annotated[str, typer.Option(help="Text to start from (the model continues it).", rich_help_panel=SAMPLING)] = "",
    length: Annotated[Optional[int], typer.Option(help=f"Tokens (characters at char level) to generate per sample. {_default('sample', 'length')}", rich_help_panel=SAMPLING, show_default=False)] = None,
    min_length: Annotated[Optional[int], typer.Option(help=f"No --stop string ends a sample before this many characters. {_default('sample', 'min_length')}", rich_help_panel=SAMPLING, show_default=False)] = None,
    temperature: Annotated[Optional[float], typer.Option(help=f"0 = greedy; higher = more surprising. {_default('sample', 'temperature')}", rich_help_panel=SAMPLING, show_default=False)] = None,
    top_k: Annotated[Optional[int], typer.Option(help="Sample among the k most likely characters only.", rich_help_panel=SAMPLING, show_default=False)] = None,
    top_p: Annotated[Optional[float], typer.Option(help="Sample from the smallest set holding this probability (0, 1].", rich_help_panel=SAMPLING, show_default=False)] = None,
    repetition_penalty: Annotated[Optional[float], typer.Option(help=f"Above 1 makes recently seen characters less likely. {_default('sample', 'repetition_penalty')}", rich_help_panel=SAMPLING, show_default=False)] = None,
    repetition_window: Annotated[Optional[int], typer.Option(help=f"Recent characters the penalty looks at. {_default('sample', 'repetition_window')}", rich_help_panel=SAMPLING, show_default=False)] = None,
    stop: Annotated[Optional[list[str]], typer.Option(help="End a sample where this text appears (not printed); repeatable; \\n and \\t are a newline and a tab.", rich_help_panel=SAMPLING, show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Same seed and settings, same text.", rich_help_panel=SAMPLING, show_default=False)] = None,
    num_samples: Annotated[int, typer.Option(help="Samples to generate (as one batch).", rich_help_panel=SAMPLING)] = 1,
    output_format: Annotated[str, typer.Option("--format", help="text, or jsonl: one JSON object per sample (prime, text, end, settings, tokens/s).", rich_help_panel=OUTPUT)] = "text",
    interactive: Annotated[bool, typer.Option("--interactive", "-i", help="Prompt for primes and stream each continuation; :help lists commands.", rich_help_panel=OUTPUT)] = False,
    checkpoint: Annotated[str, typer.Option(help="best (lowest held-out loss) or latest.")] = "best",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """Generate text from a trained run; it streams to stdout as it is made."""
    from .api import load
    from .generate import SampleConfig
    from .console import interact, write_jsonl, write_text

    settings = _given(
        length=length, min_length=min_length, temperature=temperature, top_k=top_k, top_p=top_p,
        repetition_penalty=repetition_penalty, repetition_window=repetition_window, seed=seed,
        stop=[unescape(s) for s in stop] if stop else None,
    )
    if output_format not in ("text", "jsonl"):
        raise LstmgenError(f"--format {output_format!r} must be text or jsonl")
    SampleConfig(**settings, num_samples=num_samples)  # check settings before loading the model
    if interactive and (prime or num_samples != 1 or output_format != "text"):
        raise LstmgenError("--interactive takes each prime at its prompt and prints one sample as text; drop --prime, --num-samples and --format")
    model = load(run, checkpoint=checkpoint, device=device)
    if interactive:
        interact(model, settings)
    elif output_format == "jsonl":
        write_jsonl(model, prime, settings, num_samples)
    else:
        write_text(model, prime, settings, num_samples)


def unescape(text: str) -> str:
    """\\n, \\t and \\\\ in a command-line string → newline, tab and backslash."""
    out, i = [], 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in ("\\n", "\\t", "\\\\"):
            out.append({"\\n": "\n", "\\t": "\t", "\\\\": "\\"}[pair])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run directory.", show_default=False)],
    sources: Annotated[list[str], typer.Argument(help="Held-out text: files, folders or '-' for stdin.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    checkpoint: Annotated[str, typer.Option(help="best or latest.")] = "best",
    encoding: Annotated[str, typer.Option(help="Text encoding of the sources.")] = "utf-8",
    errors: Annotated[str, typer.Option(help="strict or replace.")] = "strict",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """Measure a run on text it has not seen: bits/char (at every level), nats/token, perplexity."""
    import tempfile

    from .api import load
    from .sources import ReadOptions, resolve_sources
    from .store import DOC_SEPARATOR

    model = load(run, checkpoint=checkpoint, device=device)
    with tempfile.TemporaryDirectory() as spool:
        options = ReadOptions(encoding=encoding, errors=errors)
        resolved = resolve_sources(sources, spool_dir=Path(spool), options=options)
        texts = ["".join(doc) for source in resolved for doc in source.documents(options)]
    result = model.evaluate(DOC_SEPARATOR.join(texts))
    if as_json:
        print(json.dumps(result))
    else:
        print(
            f"{result['bits_per_char']:.4f} bits/char  {result['nats_per_token']:.4f} nats/token  "
            f"perplexity {result['perplexity']:.3f}  over {result['characters']:,} characters ({result['tokens']:,} {result['level']} tokens)"
        )
        if result["unknown_tokens"]:
            print(
                f"{result['unknown_tokens']:,} unknown tokens ({result['unknown_characters']:,} characters) scored as one "
                "<unk> each: what they spell costs no bits, so bits/char is flattered by that much"
            )


@app.command()
def info(
    run: Annotated[Path, typer.Argument(help="Run directory.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show a run's configuration, size and progress."""
    from .api import info as run_info

    data = run_info(run)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    m, t, d = data["model"], data["train"], data["data"]
    best = data["best_val_bits_per_char"]
    rows = [
        ("run", data["run"]),
        ("model", f"{m['layers']}×{m['hidden']} {m['cell'].upper()}, embedding {m['embedding']}, dropout {m['dropout']}, tied {m['tie_weights']}"),
        ("parameters", f"{data['parameters']:,}"),
        ("level", data["level"]),
        ("vocabulary", f"{data['vocab_size']} {'characters' if data['level'] == 'char' else 'tokens'}, the unknown one included"),
        ("data", f"{d.get('train_tokens', 0):,} training / {d.get('val_tokens', 0):,} held-out tokens from {', '.join(d.get('sources', []))}"),
        ("training", f"batch {t['batch_size']} × seq {t['seq_len']}, lr {t['lr']}, seed {t['seed']}"),
        ("progress", f"{data['steps']:,} steps, {data['epochs']} epochs, {data['tokens_seen']:,} tokens seen, {data['elapsed_s']:.0f} s"),
        ("best held-out", "not evaluated yet" if best is None else f"{best:.4f} bits/char (step {data['best_step']:,})"),
    ]
    for key, value in rows:
        print(f"{key:>14}  {value}")


def _training_interrupted() -> type | tuple:
    """api.TrainingInterrupted if training ran (only then can it be raised), without importing PyTorch."""
    api = sys.modules.get("lstmgen.api")
    return api.TrainingInterrupted if api is not None else ()


# `lstmgen prepare` runs from an app of its own: building the full app reads the model and
# training defaults for the help texts, which imports PyTorch (2 s and ~220 MB) for nothing.
prepare_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, context_settings=app.info.context_settings)
prepare_app.callback()(lambda: None)
prepare_app.command(name="prepare", help=prepare.__doc__)(prepare)


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 ok, 1 internal error, 2 bad input or usage, 130 interrupted."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")
    args = sys.argv[1:] if argv is None else argv
    interrupted_after_saving = False
    try:
        command_app = prepare_app if args[:1] == ["prepare"] else app
        code = command_app(args=args or ["--help"], prog_name="lstmgen", standalone_mode=False)
    except CommandLineError as e:  # usage errors: unknown option, missing argument, bad value
        ctx = getattr(e, "ctx", None)
        command = ctx.command_path if ctx is not None else "lstmgen"
        message = " ".join(e.format_message().split())
        print(f"lstmgen: error: {message} (see '{command} --help')", file=sys.stderr)
        code = 2
    except LstmgenError as e:
        print(f"lstmgen: error: {e}", file=sys.stderr)
        code = 2
    except _training_interrupted() as e:
        print(f"lstmgen: {e}", file=sys.stderr)
        code, interrupted_after_saving = 130, True
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except BrokenPipeError:  # e.g. `lstmgen generate ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    if code == 130 and not interrupted_after_saving:  # typer turns Ctrl-C into exit code 130
        print("lstmgen: interrupted", file=sys.stderr)
    sys.exit(code if isinstance(code, int) else 0)
