"""Writing files so that a crash never leaves a mix: checkpoint file sets and staged folders.

A checkpoint is a set of files (weights, trainer state, config) that must agree. They are
first written whole into `<dir>/.pending/`, then a COMMIT file is written atomically, then
they are moved into place. A crash before COMMIT leaves the previous checkpoint untouched
(the pending files are discarded); a crash after it is finished by `recover()`, which every
reader calls first. So at any instant the directory holds the previous or the new
checkpoint, never a mix.

A new run directory or token store is built in a staging folder beside its destination and
moved into place only when whole (`staged`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PENDING = ".pending"
COMMIT = "COMMIT"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_file(path)
    except OSError:  # some filesystems cannot fsync a directory; the renames are still atomic
        pass


def write_checkpoint(directory: Path, writers: dict[str, Callable[[Path], None]]) -> None:
    """Write files (name -> function that writes it) into directory as one atomic unit."""
    directory.mkdir(parents=True, exist_ok=True)
    recover(directory)
    pending = directory / PENDING
    shutil.rmtree(pending, ignore_errors=True)
    pending.mkdir()
    for name, write in writers.items():
        write(pending / name)
        _fsync_file(pending / name)
    commit_tmp = pending / (COMMIT + ".tmp")
    commit_tmp.write_text(json.dumps(sorted(writers)), encoding="utf-8")
    _fsync_file(commit_tmp)
    os.replace(commit_tmp, pending / COMMIT)  # the point of no return
    _fsync_dir(pending)
    recover(directory)


def recover(directory: Path, *, discard_uncommitted: bool = True) -> None:
    """Finish a committed checkpoint write, or discard an uncommitted one.

    Readers (generate, info) pass discard_uncommitted=False: the pending files may
    belong to a trainer that is writing them right now.
    """
    pending = directory / PENDING
    if not pending.is_dir():
        return
    commit = pending / COMMIT
    try:
        names = json.loads(commit.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        if discard_uncommitted:
            shutil.rmtree(pending, ignore_errors=True)
        return
    for name in names:
        try:
            os.replace(pending / name, directory / name)
        except FileNotFoundError:  # moved before a crash, or by another process
            pass
    _fsync_dir(directory)
    try:
        commit.unlink()
    except FileNotFoundError:
        pass
    shutil.rmtree(pending, ignore_errors=True)


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@contextmanager
def staged(out: Path, suffix: str) -> Iterator[Path]:
    """A fresh folder `.<name>.<suffix>` beside out to build in; on success it replaces out.

    On any failure (or Ctrl-C) the staging folder is removed and out is left as it was.
    """
    staging = out.parent / f".{out.name}.{suffix}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # nothing half-made is left behind
        raise
    if out.exists():
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(out)
