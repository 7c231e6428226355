"""Checkpoint file sets written as one atomic unit (`write_checkpoint`), finished or discarded
after a crash (`recover`), and the progress a weights file carries.

The files are first written whole into `<dir>/.pending/`, then a COMMIT file is written
atomically, then they are moved into place. A crash before COMMIT leaves the previous
checkpoint untouched (the pending files are discarded); a crash after it is finished by
`recover()`, which every reader calls first. So at any instant the directory holds the
previous or the new checkpoint, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError, safe_open

from lstmgen.errors import LstmgenError
from lstmgen.files.disk import DiskFull, _fsync_dir, _fsync_file, is_disk_full
from lstmgen.files.reads import read_json

PENDING = ".pending"
COMMIT = "COMMIT"


def write_checkpoint(directory: Path, writers: dict[str, Callable[[Path], None]]) -> None:
    """Write files (name -> function that writes it) into directory as one atomic unit.

    If a write fails (e.g. the disk is full) the pending files are removed and the previous
    checkpoint stays as it was; a full disk raises DiskFull.
    """
    directory.mkdir(parents=True, exist_ok=True)
    recover(directory)
    previous = all((directory / name).is_file() for name in writers)
    pending = directory / PENDING
    shutil.rmtree(pending, ignore_errors=True)
    try:
        pending.mkdir()
        for name, write in writers.items():
            write(pending / name)
            _fsync_file(pending / name)
        commit_tmp = pending / (COMMIT + ".tmp")
        commit_tmp.write_text(json.dumps(sorted(writers)), encoding="utf-8")
        _fsync_file(commit_tmp)
        os.replace(commit_tmp, pending / COMMIT)  # the point of no return
    except BaseException as e:
        full = is_disk_full(e, directory)
        shutil.rmtree(pending, ignore_errors=True)  # not committed: the previous one stands
        if full:
            kept = "the previous one there is whole" if previous else "none was saved there yet"
            raise DiskFull(
                f"the disk is full: the checkpoint could not be written to {directory} ({kept})"
            ) from None
        raise
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
        names = read_json(commit, fix="", limit=1 << 16)
    except (FileNotFoundError, LstmgenError):
        names = None
    if not _file_names(names):  # none, damaged, or names that reach out of the folder
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


def _file_names(names) -> bool:
    """Whether a COMMIT file's value is what write_checkpoint writes: a list of plain names."""
    return isinstance(names, list) and all(
        isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name
        for name in names
    )


def read_progress(path: Path) -> dict:
    """The progress dict stored with a weights file (step, epoch, tokens, best loss, ...)."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            return json.loads((f.metadata() or {}).get("progress", "{}"))
    except (SafetensorError, OSError, json.JSONDecodeError, RuntimeError) as e:
        raise damaged(path, e) from None


def damaged(path: Path, error: Exception) -> LstmgenError:
    """The one-line error for a weights file that cannot be read, with the copy to use instead."""
    if path.parent.name == "best":
        other, flag = path.parent.parent / path.name, "the latest weights (--checkpoint latest)"
    else:
        other, flag = path.parent / "best" / path.name, "the best/ weights (--checkpoint best)"
    instead = f"generate from {flag} or retrain" if other.is_file() else "retrain the run"
    return LstmgenError(f"{path} is damaged ({str(error).splitlines()[0]}); {instead}")
