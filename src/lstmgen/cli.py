"""The `lstmgen` command: parse options, call the Python API, print. No logic the API lacks.

The options of prepare, train and generate come from the config's fields (flags.py).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from lstmgen._version import __version__
from lstmgen.config import (
    API_KEY_ENV,
    DataConfig,
    ModelConfig,
    ReadOptions,
    SampleConfig,
    ServeConfig,
    TrainConfig,
)
from lstmgen.console import interact, unescape, write_jsonl, write_text
from lstmgen.data.prepare import prepare as prepare_store
from lstmgen.data.sources import read_documents
from lstmgen.describe import info as describe_run
from lstmgen.errors import Interrupted, LstmgenError, SaidByRankZero, say
from lstmgen.flags import Command, Group, with_options
from lstmgen.plot import plot_command

try:  # newer typer carries its own copy of click
    from typer import TyperException as CommandLineError
except ImportError:  # pragma: no cover - older typer on top of click
    from click import ClickException as CommandLineError


app = typer.Typer(
    name="lstmgen",
    cls=Group,
    help="Train LSTM language models on any text and generate new text from them.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
DATA, OUTPUT = "Data", "Output"
_ARGS: list[str] = []  # the command line main() runs: `train --nproc` relaunches it


def _version(value: bool) -> None:
    if value:
        print(f"lstmgen {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    pass


def api():
    """lstmgen.api, imported when a command needs it: it loads PyTorch (2 s), which prepare and
    --help never need."""
    import lstmgen.api

    return lstmgen.api


Sources = Annotated[
    list[str] | None,
    typer.Argument(
        help="Files, folders, globs, tables (.csv .tsv .jsonl .parquet, SQLite), compressed files "
        "(.gz .bz2 .xz .zst .zip), '-' for stdin, or python-docs.",
        show_default=False,
    ),
]
Sqlite = Annotated[
    Path | None,
    typer.Option(
        help="A SQLite database to read (with --query, or --table and --column).",
        rich_help_panel="Reading sources",
        show_default=False,
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line.")]
Run = Annotated[Path, typer.Argument(help="Run directory.", show_default=False)]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")]
Checkpoint = Annotated[str, typer.Option(help="best (lowest held-out loss) or latest.")]
Threads = Annotated[
    int | None,
    typer.Option(
        help="CPU threads to compute with. \\[default: chosen by measuring one thread against all "
        "cores as it runs; LSTMGEN_THREADS sets it too]",
        show_default=False,
    ),
]


ServeThreads = Annotated[
    int | None,
    typer.Option(
        help="CPU threads the batch computes with. \\[default: 1, leaving a core to the HTTP "
        "side; LSTMGEN_THREADS sets it too]",
        show_default=False,
    ),
]


# ----- commands -------------------------------------------------------------------------------
@app.command(cls=Command)
@with_options(DataConfig)
def prepare(
    sources: Sources = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Token store folder to create.", show_default=False),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the token store already in --out.")
    ] = False,
    sqlite: Sqlite = None,
    quiet: Quiet = False,
    options: dict | None = None,
) -> None:
    """Prepare text into a token store (train.bin, val.bin, meta.json) for `lstmgen train STORE`."""
    if out is None:
        raise LstmgenError(
            "missing --out: name the token store folder to create, e.g. --out data/mytext"
        )
    specs = [*(sources or []), *([str(sqlite)] if sqlite is not None else [])]
    prepare_store(specs, out=out, overwrite=overwrite, quiet=quiet, **options)


@app.command(cls=Command)
@with_options(DataConfig, ModelConfig, TrainConfig)
def train(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="A token store made by `lstmgen prepare`, or sources as for prepare: files, "
            "folders, "
            "globs, tables, compressed files, '-' for stdin, python-docs.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Run directory to create.", rich_help_panel=DATA),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue the run in this directory exactly where it stopped.",
            rich_help_panel=DATA,
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace the run already in --out.", rich_help_panel=DATA),
    ] = False,
    sqlite: Sqlite = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only errors and the final line.")
    ] = False,
    threads: Threads = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Start from the level, model and training settings of a run's config.json or "
            "a tune's best.json; options given here override them.",
            rich_help_panel=DATA,
            show_default=False,
        ),
    ] = None,
    nproc: Annotated[
        int | None,
        typer.Option(
            help="Train as this many processes on this machine (one per GPU on a GPU machine): "
            "starts torchrun with this same command. Each reads --batch-size streams.",
            rich_help_panel="Training",
            show_default=False,
        ),
    ] = None,
    options: dict | None = None,
) -> None:
    """Train a model on text; checkpoints, metrics and samples go to the run directory."""
    if nproc is not None and nproc < 1:
        raise LstmgenError(f"--nproc {nproc} must be at least 1")
    if nproc is not None and nproc > 1:
        _launch_processes(nproc, resume is None, options)
    api().use_threads(threads)
    specs = [*(sources or []), *([str(sqlite)] if sqlite is not None else [])] or None
    if resume is not None:
        if out is not None and Path(out) != resume:
            raise LstmgenError("give either --resume RUN or --out RUN, not both")
        if config is not None:
            raise LstmgenError("--config starts a new run; a resumed run keeps its own settings")
        api().train(specs, out=resume, resume=True, quiet=quiet, **options)
        return
    if out is None:
        raise LstmgenError(
            "missing --out: name the run directory to create, e.g. --out runs/mytext"
        )
    api().train(specs, out=out, overwrite=overwrite, quiet=quiet, config=config, **options)


def _launch_processes(nproc: int, new_run: bool, options: dict) -> None:
    """`train --nproc N`: check the options here (one error line, not N), then run the same
    command under torchrun and end with its exit code."""
    from lstmgen.config import RunConfig
    from lstmgen.run.launch import launch, without_nproc

    if new_run:
        RunConfig.from_options(options)
    if options.get("lr_finder"):
        raise LstmgenError(
            "--lr-finder runs in one process: find the rate without --nproc first, "
            "then train with --lr RATE"
        )
    global _LAUNCHED
    _LAUNCHED = True
    raise typer.Exit(launch(without_nproc(_ARGS), nproc))


_LAUNCHED = False  # the exit code came from training processes, which said what happened

TUNING = "Search"


@app.command(cls=Command)
@with_options(DataConfig)
def tune(
    sources: Sources = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Tune directory to create.", rich_help_panel=TUNING),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue the search in this tune directory (its finished trials are kept).",
            rich_help_panel=TUNING,
        ),
    ] = None,
    trial_time: Annotated[
        str | None,
        typer.Option(help="Training time of each trial, e.g. 60s.", rich_help_panel=TUNING),
    ] = None,
    trial_steps: Annotated[
        int | None,
        typer.Option(
            help="Optimizer steps of each trial (instead of --trial-time; reproducible).",
            rich_help_panel=TUNING,
        ),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(
            help="Trials to finish (pruned ones count) \\[default: 20 without --timeout].",
            rich_help_panel=TUNING,
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            help="Stop starting trials after this much time over all sessions, e.g. 2h.",
            rich_help_panel=TUNING,
        ),
    ] = None,
    space: Annotated[
        Path | None,
        typer.Option(
            help="A TOML file of ranges to search instead of the default space.",
            rich_help_panel=TUNING,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of the search \\[default: 0].", rich_help_panel=TUNING),
    ] = None,
    sqlite: Sqlite = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only errors and the best trial.")
    ] = False,
    threads: Threads = None,
    options: dict | None = None,
) -> None:
    """Search for the settings that reach the lowest held-out bits/char on your text."""
    from lstmgen.tuning import tune as search

    api().use_threads(threads)
    specs = [*(sources or []), *([str(sqlite)] if sqlite is not None else [])] or None
    if resume is not None:
        fixed = (trial_time, trial_steps, space, seed)
        if specs or options or out not in (None, resume) or any(v is not None for v in fixed):
            raise LstmgenError(
                "--resume continues a search as it was set up; only --trials and --timeout "
                "may be given with it"
            )
        best = search(out=resume, resume=True, trials=trials, timeout=timeout, quiet=quiet)
    else:
        if out is None:
            raise LstmgenError("missing --out: name the tune directory, e.g. --out tunes/mytext")
        best = search(
            specs,
            out=out,
            trial_time=trial_time,
            trial_steps=trial_steps,
            trials=trials,
            timeout=timeout,
            space=space,
            seed=seed or 0,
            quiet=quiet,
            **options,
        )
    if quiet:
        say(f"best: trial {best['trial']}, {best['bits_per_char']:.4f} bits/char")


@app.command(cls=Command)
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
    model = api().load(run, checkpoint=checkpoint, device=device)
    if interactive:
        interact(model, settings)
    elif output_format == "jsonl":
        write_jsonl(model, prime, settings)
    else:
        write_text(model, prime, settings)


@app.command(cls=Command)
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
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    checkpoint: Annotated[str, typer.Option(help="best or latest.")] = "best",
    encoding: Annotated[str, typer.Option(help="Text encoding of the sources.")] = "utf-8",
    errors: Annotated[str, typer.Option(help="strict or replace.")] = "strict",
    device: Device = "auto",
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
    api().use_threads(threads)
    model = api().load(run, checkpoint=checkpoint, device=device)
    if by_condition:
        result = model.evaluate_by_condition()
        if as_json:
            print(json.dumps(result))
            return
        for line in condition_table(result):
            print(line)
        return
    result = model.evaluate(read_documents(sources, ReadOptions(encoding=encoding, errors=errors)))
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


@app.command(cls=Command)
@with_options(ServeConfig)
def serve(
    runs: Annotated[
        list[Path], typer.Argument(help="Run directories to serve.", show_default=False)
    ],
    checkpoint: Checkpoint = "best",
    device: Device = "auto",
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
    run_server(runs, settings, device=device, checkpoint=checkpoint)


@app.command(cls=Command)
def info(
    run: Run,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show a run's configuration, size and progress."""
    data = describe_run(run)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    for key, value in info_rows(data):
        print(f"{key:>14}  {value}")


@app.command(cls=Command)
def plot(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run directories to draw side by side.", metavar="RUN", show_default=False
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The PNG file to write.")] = Path(
        "curves.png"
    ),
) -> None:
    """Draw held-out and training bits/char of runs against time and tokens (a PNG)."""
    print(plot_command(runs, out))


def condition_table(result: dict) -> list[str]:
    """The lines of `evaluate --by-condition`: held-out bits/char per condition, then all."""
    rows = result["conditions"]
    width = max(len(result["column"]), *(len(v) for v in rows), 3)
    lines = [f"{result['column']:<{width}}  {'documents':>9}  {'characters':>10}  bits/char"]
    for value, row in rows.items():
        bits = "-" if row["bits_per_char"] is None else f"{row['bits_per_char']:.4f}"
        lines.append(f"{value:<{width}}  {row['documents']:>9,}  {row['characters']:>10,}  {bits}")
    documents = sum(row["documents"] for row in rows.values())
    lines.append(
        f"{'all':<{width}}  {documents:>9,}  {result['characters']:>10,}  "
        f"{result['bits_per_char']:.4f}"
    )
    return lines


def plural(count: float, word: str) -> str:
    """'1 epoch', '2 epochs', '1,234 steps'."""
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def info_rows(data: dict) -> list[tuple[str, str]]:
    """The lines of `lstmgen info`: (label, text)."""
    m, t, d = data["model"], data["train"], data["data"]
    best, last = data["best_val_bits_per_char"], data.get("last_val_bits_per_char")
    unit = "characters" if data["level"] == "char" else "tokens"
    rows = [
        ("run", data["run"]),
        (
            "model",
            f"{m['layers']}×{m['hidden']} {m['cell'].upper()}, embedding {m['embedding']}, "
            f"dropout {m['dropout']}, tied {m['tie_weights']}",
        ),
        ("parameters", f"{data['parameters']:,}"),
        ("level", data["level"]),
        ("vocabulary", f"{data['vocab_size']} {unit}, the unknown one included"),
        (
            "data",
            f"{d.get('train_tokens', 0):,} training / {d.get('val_tokens', 0):,} held-out "
            f"tokens from {', '.join(d.get('sources', []))}",
        ),
        (
            "training",
            f"batch {t['batch_size']} × seq {t['seq_len']}, lr {t['lr']}, seed {t['seed']}",
        ),
        (
            "progress",
            f"{plural(data['steps'], 'step')}, {plural(data['epochs'], 'epoch')}, "
            f"{plural(data['tokens_seen'], 'token')} seen, {data['elapsed_s']:.0f} s",
        ),
        (
            "final held-out",
            "not evaluated yet"
            if last is None
            else f"{last:.4f} bits/char"
            + (f" (step {data['last_val_step']:,})" if data.get("last_val_step") else ""),
        ),
        (
            "best held-out",
            "not evaluated yet"
            if best is None
            else f"{best:.4f} bits/char (step {data['best_step']:,})",
        ),
    ]
    conditions = d.get("conditions")
    if conditions:
        counts = ", ".join(f"{v} ({n:,})" for v, n in conditions.get("documents", {}).items())
        rows.append(("conditions", f"{conditions.get('column')}: {counts} documents"))
    base = data.get("base")
    if base:
        rows.append(
            (
                "base run",
                f"{base.get('run')} ({base.get('checkpoint')} checkpoint, step "
                f"{base.get('step', 0):,}; trained on {', '.join(base.get('sources') or [])})",
            )
        )
    sizing = data.get("sizing")
    if sizing:
        rows.append(
            (
                "sizing",
                f"hidden {sizing.get('hidden')} chosen for --max-time {t.get('max_time')} "
                f"(limited by {sizing.get('limited_by')}; "
                f"{sizing.get('tokens_per_s', 0):,} tokens/s measured)",
            )
        )
    finder = data.get("lr_finder")
    if finder:
        rows.append(("lr finder", f"peak lr {finder.get('suggestion', 0):.3g} from a range test"))
    vectors = data.get("embeddings")
    if vectors:
        rows.append(
            (
                "embeddings",
                f"{vectors.get('file')}: {vectors.get('vocabulary_coverage', 0):.1%} of the "
                f"vocabulary, {vectors.get('token_coverage', 0):.1%} of the training tokens",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 ok, 1 internal error, 2 bad input or usage, 130 interrupted."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")
    args = sys.argv[1:] if argv is None else argv
    _ARGS[:] = args
    # under torchrun, the training processes other than rank 0 leave the talking to it
    secondary = os.environ.get("RANK", "0") != "0"
    interrupted_after_saving = False
    try:
        code = app(args=args or ["--help"], prog_name="lstmgen", standalone_mode=False)
    except CommandLineError as e:  # usage errors: unknown option, missing argument, bad value
        ctx = getattr(e, "ctx", None)
        command = ctx.command_path if ctx is not None else "lstmgen"
        message = " ".join(e.format_message().split())
        say(f"lstmgen: error: {message} (see '{command} --help')")
        code = 2
    except LstmgenError as e:
        if not isinstance(e, SaidByRankZero):
            say(f"lstmgen: error: {e}")
        code = 2
    except Interrupted as e:
        if not secondary:
            say(f"lstmgen: {e}")
        code, interrupted_after_saving = 130, True
    except (KeyboardInterrupt, typer.Abort):
        code = 130
    except BrokenPipeError:  # e.g. `lstmgen generate ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    interrupted_after_saving = interrupted_after_saving or _LAUNCHED or secondary
    if code == 130 and not interrupted_after_saving:  # typer turns Ctrl-C into exit code 130
        say("lstmgen: interrupted")
    sys.exit(code if isinstance(code, int) else 0)
