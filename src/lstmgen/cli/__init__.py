"""The `lstmgen` command: parse options, call the Python API, print. No logic the API lacks.

program.py holds the Typer app, the options commands share and main(); each other module
holds one command group: its options and its call into the API. The options of prepare,
train, tune, generate and serve come from the config's fields (flags.py).
"""

from __future__ import annotations

from lstmgen.cli import (
    classify,
    evaluate,
    export,
    generate,
    prepare,
    runs,
    serve,
    train,
    tune,
)
from lstmgen.cli.program import app, main
from lstmgen.flags import Command

__all__ = ["app", "main"]

# the commands, in the order `lstmgen --help` lists them
for _command in (
    prepare.prepare,
    train.train,
    tune.tune,
    generate.generate,
    evaluate.evaluate,
    classify.classify,
    serve.serve,
    export.export,
    runs.info,
    runs.plot,
):
    app.command(cls=Command)(_command)
