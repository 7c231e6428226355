"""`lstmgen train --nproc N`: the same command as N processes under torchrun on this machine.

This process becomes torchrun's agent (torch.distributed.run, --standalone: a free port on
this machine); it runs `python -m lstmgen ARGS` N times and watches them. Ctrl-C reaches
the agent, which passes it on to every process: they stop at the same step, rank 0 saves,
and the command exits 130 as a one-process run does.
"""

from __future__ import annotations

import logging
import os

from lstmgen.errors import LstmgenError
from lstmgen.threads import cores


def without_nproc(args: list[str]) -> list[str]:
    """The command's arguments minus --nproc N (or --nproc=N): what each process runs."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


def launch(args: list[str], nproc: int) -> int:
    """Run `lstmgen ARGS` as nproc processes under torchrun; the exit code for the command:
    rank 0's (0, 2 for a one-line error, 130 when interrupted), else the first failure's."""
    if "RANK" in os.environ:
        raise LstmgenError("--nproc starts torchrun itself; under torchrun leave --nproc out")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # each process's share of the cores (torchrun would set 1 and say so at length)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores() // nproc)))
    # the processes say what went wrong in one line; torchrun's own report would repeat it
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    options = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "--module", "lstmgen", *args]
    )
    try:
        run(options)
    except SignalException:
        return 130
    except ChildFailedError as e:
        first = e.failures.get(0) or next(iter(e.failures.values()))
        return first.exitcode if first.exitcode > 0 else 1
    return 0
