"""Reading a run's or a store's own files within bounds: a damaged or hostile file is a one-line
error naming it, never a hang, a huge allocation or a traceback."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

from lstmgen.errors import LstmgenError

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
