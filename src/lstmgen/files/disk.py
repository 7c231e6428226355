"""Writing safely: fsync, a readable mode, and a full disk (or no permission) told in one line."""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
from pathlib import Path

from lstmgen.errors import LstmgenError

FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskFull(LstmgenError):
    """A checkpoint could not be written for want of space; the previous one, if any, is whole."""


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


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)  # read once: os.umask can only be read by setting it
    os.umask(mask)
    return mask


def make_readable(path: Path) -> None:
    """Give a file the mode an ordinary new file gets (0644 under umask 022): some writers
    (safetensors) create theirs private (0600)."""
    os.chmod(path, 0o666 & ~_umask())


def is_disk_full(error: BaseException, where: Path) -> bool:
    """Whether a failed write failed for want of space (also when a library hid the errno)."""
    if isinstance(error, OSError) and error.errno in FULL:
        return True
    text = str(error)
    if any(s in text for s in ("No space left", "os error 28", "Disk quota exceeded")):
        return True
    if not isinstance(error, Exception):  # Ctrl-C and the like
        return False
    try:  # torch.save says only "file write failed"
        return shutil.disk_usage(where).free < 1 << 20
    except OSError:
        return False


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _existing(path: Path) -> Path:
    """The nearest of path and its parents that exists."""
    return next((p for p in (path, *path.parents) if p.exists()), path)


def cannot_write(path: Path, e: OSError, what: str) -> LstmgenError:
    """A one-line error for an OSError met while writing the run or store at path."""
    there = _existing(path)
    if e.errno in (errno.ENOTDIR, errno.EEXIST) or not there.is_dir():
        why = f"{there} is a file, not a folder"
    elif e.errno in (errno.EACCES, errno.EPERM):
        why = f"no permission to write in {there}"
    elif e.errno == errno.EROFS:
        why = f"{there} is on a read-only file system"
    elif e.errno in FULL:
        why = "the disk is full"
    else:
        why = (e.strerror or str(e)).lower()
    return LstmgenError(f"cannot write {path}: {why}; {what}")
