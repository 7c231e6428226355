"""Whoever writes a folder holds an OS lock on its `.lock` file (`locked`): a second lstmgen that
wants to write it is refused at once. The kernel drops the lock when its holder ends, however it
ends (even `kill -9`), so a lock can never be left stale. Where there is no fcntl (Windows),
nothing is locked."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lstmgen.errors import LstmgenError
from lstmgen.files.disk import cannot_write

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locking
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"


class _Busy(Exception):
    """Another process holds the lock."""


def _acquire(path: Path, *, create: bool) -> int | None:
    """An open descriptor of the lock file `path`, locked (flock, exclusive, without waiting).

    None where there is no fcntl, or when the file does not exist and create is False (then
    nobody holds it). Raises _Busy when another process holds it.
    """
    if fcntl is None:  # pragma: no cover - Windows
        return None
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDONLY | (os.O_CREAT if create else 0), 0o666)
        except FileNotFoundError:
            if create:
                raise
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _Busy from None
            raise
        # The holder may have removed or replaced the file before it let go: only the file
        # that is at `path` now counts.
        try:
            now, held = os.stat(path), os.fstat(fd)
            if (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
        if not create:
            return None
    raise _Busy


def _release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the only descriptor drops the lock


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold directory's lock while the block runs: it is the one lstmgen writing directory.

    Another holder gets a one-line LstmgenError naming the directory; so does a directory
    that cannot be written (read-only).
    """
    try:
        fd = _acquire(directory / LOCK, create=True)
    except _Busy:
        raise LstmgenError(
            f"another lstmgen is training {directory} right now; wait for it to finish "
            "(or stop it), then try again"
        ) from None
    except OSError as e:
        raise cannot_write(
            directory, e, "copy the run to a writable place and resume the copy"
        ) from None
    try:
        yield
    finally:
        _release(fd)
