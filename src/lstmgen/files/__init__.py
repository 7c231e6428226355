"""Files that a crash never leaves half-written, and reads that a damaged file cannot abuse.

- `checkpoints`: a checkpoint's file set written as one atomic unit, recovered after a crash.
- `folders`: a run, store or export built in a staging folder and moved in whole, and what
  `--overwrite` may replace.
- `locks`: the OS lock that makes one lstmgen the writer of a folder.
- `reads`: a run's own JSON and logs read within bounds.
- `disk`: fsync, file modes, and a full disk or a refused write as one line.
"""

from lstmgen.files.checkpoints import (
    COMMIT,
    PENDING,
    damaged,
    read_progress,
    recover,
    write_checkpoint,
)
from lstmgen.files.disk import FULL, DiskFull, cannot_write, is_disk_full, make_readable, write_json
from lstmgen.files.folders import check_replaceable, staged
from lstmgen.files.locks import LOCK, locked
from lstmgen.files.reads import (
    JSON_DEPTH_LIMIT,
    JSON_LIMIT_BYTES,
    TEXT_LIMIT_BYTES,
    json_line,
    read_bytes,
    read_json,
    read_lines,
)

__all__ = [
    "COMMIT",
    "FULL",
    "JSON_DEPTH_LIMIT",
    "JSON_LIMIT_BYTES",
    "LOCK",
    "PENDING",
    "TEXT_LIMIT_BYTES",
    "DiskFull",
    "cannot_write",
    "check_replaceable",
    "damaged",
    "is_disk_full",
    "json_line",
    "locked",
    "make_readable",
    "read_bytes",
    "read_json",
    "read_lines",
    "read_progress",
    "recover",
    "staged",
    "write_checkpoint",
    "write_json",
]
