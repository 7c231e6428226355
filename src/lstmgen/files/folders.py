"""A new run directory, token store or export is built in a staging folder beside its destination
and moved into place only when whole (`staged`)."""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lstmgen.errors import LstmgenError
from lstmgen.files.disk import cannot_write
from lstmgen.files.locks import LOCK, _acquire, _Busy, _release


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


def check_replaceable(
    out: Path,
    *,
    kind: str,
    marker: str,
    names: Iterable[str],
    sources: Iterable[str | Path] = (),
) -> None:
    """Raise a one-line error unless `--overwrite` may replace out.

    It may where out does not exist, is empty, or is an earlier lstmgen `kind` (it holds the
    `marker` file) that holds nothing but the `names` lstmgen writes there. Never a file, a
    link, a folder holding a file or folder of the user's (notes.txt, other runs), one that
    holds any of the `sources` this command reads, or the current folder or one above it.
    """
    fix = f"--overwrite replaces only an earlier lstmgen {kind}: choose another --out"
    if out.is_symlink():
        raise LstmgenError(f"--out {out} is a symbolic link; name the folder itself ({fix})")
    if not out.exists():
        return
    if not out.is_dir():
        raise LstmgenError(f"--out {out} is a file, not an lstmgen {kind}; {fix}")
    here = out.resolve()
    cwd = Path.cwd().resolve()
    if cwd == here or here in cwd.parents:
        raise LstmgenError(f"--out {out} holds the current folder; {fix}")
    for source in sources:
        path = Path(source)
        if not path.exists():  # '-', a named corpus
            continue
        path = path.resolve()
        if path == here or here in path.parents:
            raise LstmgenError(
                f"--out {out} holds {source}, which this command reads; replacing it would "
                f"delete it: {fix.split(': ')[1]}"
            )
    entries = sorted(entry.name for entry in out.iterdir())
    if not entries:
        return
    if marker not in entries:
        raise LstmgenError(f"{out} is not an lstmgen {kind} (it has no {marker}); {fix}")
    allowed = set(names) | {LOCK, ".pending"}
    foreign = [name for name in entries if name not in allowed]
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise LstmgenError(
            f"{out} holds {foreign[0]}{more}, which lstmgen did not make; {fix}, "
            "or move them out first"
        )
