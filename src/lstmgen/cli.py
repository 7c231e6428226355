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
    from .generate import SampleConfig
    from .model import ModelConfig
    from .train import TrainConfig

    cls = {"model": ModelConfig, "train": TrainConfig, "sample": SampleConfig}[cls_name]
    value = next(f.default for f in fields(cls) if f.name == name)
    return f"\\[default: {value}]"


def _given(**options) -> dict:
    return {k: v for k, v in options.items() if v is not None}


MODEL = "Model"
TRAINING = "Training"
DATA = "Data"


@app.command()
def train(
    sources: Annotated[Optional[list[str]], typer.Argument(help="Text files, folders, '-' for stdin, or python-docs.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory to create.", rich_help_panel=DATA)] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this directory exactly where it stopped.", rich_help_panel=DATA)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run already in --out.", rich_help_panel=DATA)] = False,
    encoding: Annotated[str, typer.Option(help="Text encoding of the sources.", rich_help_panel=DATA)] = "utf-8",
    errors: Annotated[str, typer.Option(help="On undecodable bytes: strict (stop) or replace.", rich_help_panel=DATA)] = "strict",
    val_fraction: Annotated[float, typer.Option(help="Share of the text held out for validation (the end).", rich_help_panel=DATA)] = 0.1,
    layers: Annotated[Optional[int], typer.Option(help=f"LSTM layers. {_default('model', 'layers')}", rich_help_panel=MODEL, show_default=False)] = None,
    hidden: Annotated[Optional[int], typer.Option(help=f"Hidden units per layer. {_default('model', 'hidden')}", rich_help_panel=MODEL, show_default=False)] = None,
    embedding: Annotated[Optional[int], typer.Option(help=f"Embedding size. {_default('model', 'embedding')}", rich_help_panel=MODEL, show_default=False)] = None,
    dropout: Annotated[Optional[float], typer.Option(help=f"Dropout. {_default('model', 'dropout')}", rich_help_panel=MODEL, show_default=False)] = None,
    cell: Annotated[Optional[str], typer.Option(help=f"lstm or gru. {_default('model', 'cell')}", rich_help_panel=MODEL, show_default=False)] = None,
    tie_weights: Annotated[Optional[bool], typer.Option("--tie-weights/--no-tie-weights", help=f"Share embedding and output weights. {_default('model', 'tie_weights')}", rich_help_panel=MODEL, show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option(help=f"Parallel streams per batch. {_default('train', 'batch_size')}", rich_help_panel=TRAINING, show_default=False)] = None,
    seq_len: Annotated[Optional[int], typer.Option(help=f"Back-propagation steps per batch. {_default('train', 'seq_len')}", rich_help_panel=TRAINING, show_default=False)] = None,
    lr: Annotated[Optional[float], typer.Option(help=f"Peak learning rate. {_default('train', 'lr')}", rich_help_panel=TRAINING, show_default=False)] = None,
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
    sample_length: Annotated[Optional[int], typer.Option(help=f"Characters per sample shown after each epoch. {_default('train', 'sample_length')}", rich_help_panel=TRAINING, show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help=f"Random seed. {_default('train', 'seed')}", rich_help_panel=TRAINING, show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option(help=f"auto, cpu, cuda, cuda:N or mps. {_default('train', 'device')}", rich_help_panel=TRAINING, show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the final line.")] = False,
) -> None:
    """Train a model on text; checkpoints, metrics and samples go to the run directory."""
    from .api import train as train_run

    options = _given(
        layers=layers, hidden=hidden, embedding=embedding, dropout=dropout, cell=cell, tie_weights=tie_weights,
        batch_size=batch_size, seq_len=seq_len, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
        min_lr_fraction=min_lr_fraction, grad_clip=grad_clip, save_every=save_every, sample_length=sample_length, epochs=epochs, max_time=max_time, max_steps=max_steps,
        patience=patience, eval_every=eval_every, seed=seed, device=device,
    )
    if resume is not None:
        if out is not None and Path(out) != resume:
            raise LstmgenError("give either --resume RUN or --out RUN, not both")
        train_run(sources, out=resume, resume=True, quiet=quiet, **options)
        return
    if out is None:
        raise LstmgenError("missing --out: name the run directory to create, e.g. --out runs/mytext")
    train_run(sources, out=out, overwrite=overwrite, encoding=encoding, errors=errors, val_fraction=val_fraction, quiet=quiet, **options)


SAMPLING = "Sampling"
OUTPUT = "Output"


@app.command()
def generate(
    run: Annotated[Path, typer.Argument(help="Run directory.", show_default=False)],
    prime: Annotated[str, typer.Option(help="Text to start from (the model continues it).", rich_help_panel=SAMPLING)] = "",
    length: Annotated[Optional[int], typer.Option(help=f"Characters to generate per sample. {_default('sample', 'length')}", rich_help_panel=SAMPLING, show_default=False)] = None,
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
    """Measure a run on text it has not seen: nats/char, bits/char, perplexity."""
    import tempfile

    from .api import load
    from .sources import resolve_sources
    from .store import DOC_SEPARATOR

    model = load(run, checkpoint=checkpoint, device=device)
    with tempfile.TemporaryDirectory() as spool:
        resolved = resolve_sources(sources, spool_dir=Path(spool))
        texts = ["".join(doc) for source in resolved for doc in source.documents(encoding=encoding, errors=errors)]
    result = model.evaluate(DOC_SEPARATOR.join(texts))
    if as_json:
        print(json.dumps(result))
    else:
        print(
            f"{result['nats_per_char']:.4f} nats/char  {result['bits_per_char']:.4f} bits/char  "
            f"perplexity {result['perplexity']:.3f}  over {result['characters']:,} characters"
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
        ("vocabulary", f"{data['vocab_size']} ({data['level']} level, including the unknown character)"),
        ("data", f"{d.get('train_tokens', 0):,} training / {d.get('val_tokens', 0):,} held-out characters from {', '.join(d.get('sources', []))}"),
        ("training", f"batch {t['batch_size']} × seq {t['seq_len']}, lr {t['lr']}, seed {t['seed']}"),
        ("progress", f"{data['steps']:,} steps, {data['epochs']} epochs, {data['tokens_seen']:,} tokens seen, {data['elapsed_s']:.0f} s"),
        ("best held-out", "not evaluated yet" if best is None else f"{best:.4f} bits/char (step {data['best_step']:,})"),
    ]
    for key, value in rows:
        print(f"{key:>14}  {value}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 ok, 1 internal error, 2 bad input or usage, 130 interrupted."""
    from .api import TrainingInterrupted

    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")
    args = sys.argv[1:] if argv is None else argv
    interrupted_after_saving = False
    try:
        code = app(args=args or ["--help"], prog_name="lstmgen", standalone_mode=False)
    except CommandLineError as e:  # usage errors: unknown option, missing argument, bad value
        ctx = getattr(e, "ctx", None)
        command = ctx.command_path if ctx is not None else "lstmgen"
        message = " ".join(e.format_message().split())
        print(f"lstmgen: error: {message} (see '{command} --help')", file=sys.stderr)
        code = 2
    except LstmgenError as e:
        print(f"lstmgen: error: {e}", file=sys.stderr)
        code = 2
    except TrainingInterrupted as e:
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
