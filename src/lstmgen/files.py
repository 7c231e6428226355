"""Writing files so that a crash never leaves a mix: checkpoint file sets and staged folders.

A checkpoint is a set of files (weights, trainer state, config) that must agree. They are
first written whole into `<dir>/.pending/`, then a COMMIT file is written atomically, then
they are moved into place. A crash before COMMIT leaves the previous checkpoint untouched
(the pending files are discarded); a crash after it is finished by `recover()`, which every
reader calls first. So at any instant the directory holds the previous or the new
checkpoint, never a mix.

A new run directory or token store is built in a staging folder beside its destination and
moved into place only when whole (`staged`).

Whoever writes a folder holds an OS lock on its `.lock` file (`locked`): a second lstmgen
that wants to write it is refused at once. The kernel drops the lock when its holder ends,
however it ends (even `kill -9`), so a lock can never be left stale. Where there is no
fcntl (Windows), nothing is locked.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError, safe_open

from lstmgen.errors import LstmgenError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locking
    fcntl = None  # type: ignore[assignment]

PENDING = ".pending"
COMMIT = "COMMIT"
LOCK = ".lock"
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


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ----- reading a run's or a store's own files ----------------------------------------------------
# The largest JSON file lstmgen writes is a BPE tokenizer.json: about 2 MB for 32,000 merges.
JSON_LIMIT_BYTES = 64 << 20
# lstmgen's own files nest at most 7 deep (a BPE tokenizer.json); Python's parser recurses and
# fails near 1,000, and code that walks a value could fail sooner.
JSON_DEPTH_LIMIT = 32
# metrics.jsonl: ~300 bytes a row, so a million evaluations.
TEXT_LIMIT_BYTES = 512 << 20


def read_bytes(path: Path, *, limit: int, fix: str) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; anything else is a one-line error
    naming path and ending with `fix` (a device, a FIFO, a symlink loop, a folder, too big).
    A missing file raises FileNotFoundError, which callers word for themselves."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as e:
        why = "a symlink loop" if e.errno == errno.ELOOP else (e.strerror or str(e)).lower()
        raise LstmgenError(f"{path} cannot be read ({why}); {fix}") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            kind = "a folder" if stat.S_ISDIR(status.st_mode) else "a device, FIFO or socket"
            raise LstmgenError(f"{path} is not a regular file ({kind}); {fix}")
        if status.st_size > limit:
            raise LstmgenError(
                f"{path} is {status.st_size / 2**20:,.0f} MiB, more than lstmgen ever writes "
                f"there ({limit / 2**20:,.0f} MiB); {fix}"
            )
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)  # the file may have grown since fstat
    except OSError as e:
        why = (e.strerror or str(e)).lower()
        raise LstmgenError(f"{path} cannot be read ({why}); {fix}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise LstmgenError(f"{path} is larger than lstmgen ever writes there; {fix}")
    return data


def read_json(path: Path, *, fix: str, limit: int = JSON_LIMIT_BYTES):
    """The value of a JSON file of a run directory or token store, read within bounds: a
    regular file of at most `limit` bytes, UTF-8, nested at most JSON_DEPTH_LIMIT deep.
    Anything else is a one-line LstmgenError naming path and ending with `fix` ("restore it
    or train again"); a missing file raises FileNotFoundError."""
    data = read_bytes(path, limit=limit, fix=fix)
    deep = False
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):  # ValueError: also an integer of 5,000 digits
        raise LstmgenError(f"{path} is damaged (not valid JSON); {fix}") from None
    except RecursionError:
        deep = True
    if deep or _deeper_than(value, JSON_DEPTH_LIMIT):
        raise LstmgenError(
            f"{path} is damaged (nested more than {JSON_DEPTH_LIMIT} levels deep); {fix}"
        )
    return value


def read_lines(path: Path, *, fix: str) -> list[str]:
    """The lines of a run's log (metrics.jsonl), bounded as read_bytes (TEXT_LIMIT_BYTES)."""
    data = read_bytes(path, limit=TEXT_LIMIT_BYTES, fix=fix)
    return data.decode("utf-8", errors="replace").splitlines()


def json_line(line: str):
    """The value of one line of a JSON-lines log, or None where it is damaged (cut short by a
    crash, or nested more than JSON_DEPTH_LIMIT deep)."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return None if _deeper_than(value, JSON_DEPTH_LIMIT) else value


def _deeper_than(value, limit: int) -> bool:
    """Whether lists and objects nest in value more than limit levels deep (no recursion)."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


# ----- locks ----------------------------------------------------------------------------------
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


@contextmanager
def staged(out: Path, suffix: str) -> Iterator[Path]:
    """A fresh folder `.<name>.<suffix>` beside out to build in; on success it replaces out.

    On any failure (or Ctrl-C) the staging folder is removed and out is left as it was. The
    staging folder is locked while it is built: a second lstmgen building the same out at
    the same time gets a one-line error, and a staging folder left by a crash is replaced.
    """
    staging = out.parent / f".{out.name}.{suffix}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _release(_refuse_busy(out, create=False))
        lock = _claim(staging, out)
    except OSError as e:
        raise cannot_write(out, e, "choose another --out") from None
    try:
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # nothing half-made is left behind
            raise
        try:
            _swap_in(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            os.unlink(out / LOCK)  # the staging folder's lock, moved in with it
        except OSError:
            pass
    finally:
        _release(lock)


def _refuse_busy(out: Path, *, create: bool) -> int | None:
    """Raise if a trainer holds out's lock; else the lock, held (None if none was made)."""
    if not out.is_dir():
        return None
    try:
        return _acquire(out / LOCK, create=create)
    except _Busy:
        raise LstmgenError(
            f"another lstmgen is training {out} right now; wait for it to finish (or stop it) "
            "before replacing it"
        ) from None


def _claim(staging: Path, out: Path) -> int | None:
    """Make the staging folder, with its lock held, atomically (a folder renamed into place)."""
    for _ in range(3):
        fresh = staging.parent / f"{staging.name}.{os.getpid()}.{secrets.token_hex(4)}"
        fresh.mkdir()
        lock = None
        try:
            lock = _acquire(fresh / LOCK, create=True)
            os.rename(fresh, staging)  # fails if staging exists (and is not empty)
            return lock
        except OSError as e:
            _release(lock)
            shutil.rmtree(fresh, ignore_errors=True)
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        try:
            stale = _acquire(staging / LOCK, create=False)
        except _Busy:
            raise LstmgenError(
                f"another lstmgen is creating {out} right now; wait for it to finish "
                "or choose another --out"
            ) from None
        shutil.rmtree(staging, ignore_errors=True)  # left by a crash: nobody holds it
        _release(stale)
    raise LstmgenError(f"another lstmgen is creating {out} right now; choose another --out")


def _swap_in(staging: Path, out: Path) -> None:
    if not out.exists():
        try:
            staging.rename(out)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            raise LstmgenError(
                f"{out} was created by another lstmgen meanwhile; choose another --out"
            ) from None
        return
    held = _refuse_busy(out, create=True)  # a trainer starting now waits for the new one
    try:
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        _release(held)


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
