"""The `lstmgen` program: its Typer app and --version, the options several commands share,
the lazy import of the API, and main(), which turns errors into one line and an exit code.

The commands themselves live one group to a module beside this one; cli/__init__.py
registers them on the app in the order --help lists them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from lstmgen._version import __version__
from lstmgen.errors import Interrupted, LstmgenError, SaidByRankZero, say
from lstmgen.files.disk import FULL
from lstmgen.flags import ClosedPipe, Group

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
_ARGS: list[str] = []  # the command line main() runs: `train --nproc` relaunches it
_LAUNCHED = False  # the exit code came from training processes, which said what happened


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
Run = Annotated[Path, typer.Argument(help="Run directory.", show_default=False)]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")]
Checkpoint = Annotated[str, typer.Option(help="best (lowest held-out loss) or latest.")]
Precision = Annotated[
    str,
    typer.Option(
        help="auto, fp32, bf16 or int8. auto: int8 on a CPU with int8 dot products where the "
        "run's held-out loss under int8 is within 0.01 bits/char of fp32's (checked once per "
        "checkpoint), else fp32.",
    ),
]
Threads = Annotated[
    int | None,
    typer.Option(
        help="CPU threads to compute with. \\[default: chosen by measuring one thread against all "
        "cores as it runs; LSTMGEN_THREADS sets it too]",
        show_default=False,
    ),
]


def source_specs(sources: list[str] | None, sqlite: Path | None) -> list[str]:
    """The sources named on the command line, then the --sqlite database if one was given."""
    return [*(sources or []), *([str(sqlite)] if sqlite is not None else [])]


def relaunch(nproc: int) -> NoReturn:
    """Run this same command line as nproc processes under torchrun; exit with its code."""
    from lstmgen.run.launch import launch, without_nproc

    global _LAUNCHED
    _LAUNCHED = True
    raise typer.Exit(launch(without_nproc(_ARGS), nproc))


def _drop_stdout() -> None:
    """Send what stdout still buffers to /dev/null: Python's flush at exit would fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file (a test's capture)
        pass


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
        sys.stdout.flush()  # here, not at exit: a full disk or a closed pipe is told below
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
    except (BrokenPipeError, ClosedPipe):  # e.g. `lstmgen generate ... | head`
        _drop_stdout()
        code = 0
    except OSError as e:
        if e.errno not in FULL:
            raise
        _drop_stdout()  # what stdout still buffers cannot be written either
        where = f" writing {e.filename}" if e.filename else ""
        say(f"lstmgen: error: the disk is full{where}; free some space and run again")
        code = 2
    interrupted_after_saving = interrupted_after_saving or _LAUNCHED or secondary
    if code == 130 and not interrupted_after_saving:  # typer turns Ctrl-C into exit code 130
        say("lstmgen: interrupted")
    sys.exit(code if isinstance(code, int) else 0)
