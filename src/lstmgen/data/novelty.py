"""How much of a text stands in the training text: its longest copy and its share of copied
50-character windows (no torch). The copy guard's and the figures' index comes from here:
`training_indexes` opens (building when missing or damaged) a run's index, and its base's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lstmgen.data.store import TokenStore
from lstmgen.data.textindex import BUILD_LIMIT_BYTES, TextIndex, build_index, open_index
from lstmgen.errors import LstmgenError, warn
from lstmgen.files import read_json

WINDOW = 50  # copied_50: the share of a text's 50-character windows found in the training text
NOTE_ABOVE = 100  # a plain sample copying more than this many characters gets a note


def index_of_store(
    store_path: Path, *, build: bool = True, allow_large: bool = False, quiet: bool = False
) -> TextIndex | None:
    """The store's copy index: opened, or built when missing or damaged (build=True). A
    training text above BUILD_LIMIT_BYTES is built only with allow_large; without it (or
    build=False) a missing index is None."""
    store = TokenStore.open(store_path)
    index = open_index(store.path, train_tokens=len(store.train))
    if index is not None or not build:
        return index
    estimate = int(store.meta.get("characters", 0)) - int(store.meta.get("val_characters", 0))
    if estimate > BUILD_LIMIT_BYTES and not allow_large:
        raise LstmgenError(
            f"the training text of {store.path} is about {estimate / 1e9:.1f} GB; an index that "
            "large (8 bytes a byte, sorted in memory) is built only on request: "
            f"lstmgen evaluate {store.path.parent} --build-index"
        )
    tokenizer = _store_tokenizer(store.path)
    try:
        return build_index(store.path, store.train, tokenizer, quiet=quiet)
    except OSError as e:
        raise LstmgenError(
            f"cannot write the copy index into {store.path} ({e.strerror or e}); "
            "make the folder writable or copy the run"
        ) from None


def _store_tokenizer(path: Path):
    from lstmgen.tokens import load_tokenizer

    return load_tokenizer(path / "tokenizer.json")


def base_run(run_dir: Path) -> Path | None:
    """The run this one was fine-tuned from (--init-from), as config.json names it."""
    try:
        config = read_json(run_dir / "config.json", fix="train the run again")
    except (OSError, LstmgenError):
        return None
    base = (config.get("train") or {}).get("init_from") if isinstance(config, dict) else None
    return Path(base) if base else None


def training_indexes(
    run_dir: Path | None, *, build: bool = True, allow_large: bool = False, quiet: bool = False
) -> list[TextIndex]:
    """The indexes a run's copies are checked against: its own training text's (built when
    missing), and its base's (--init-from) where that one is already built."""
    if run_dir is None or not (Path(run_dir) / "data" / "meta.json").is_file():
        raise LstmgenError(
            "--max-copy and the novelty figures need the run's training text: load the model "
            "from a run directory that holds its data folder"
        )
    run_dir = Path(run_dir)
    own = index_of_store(run_dir / "data", build=build, allow_large=allow_large, quiet=quiet)
    indexes = [own] if own is not None else []
    base = base_run(run_dir)
    if base is not None and (base / "data" / "meta.json").is_file():
        try:
            theirs = index_of_store(base / "data", build=False)
        except LstmgenError:
            theirs = None
        if theirs is not None:
            indexes.append(theirs)
    return indexes


def copy_cover(run_dir: Path) -> dict:
    """What the copy guard and the figures check against (for `info`): this run's training
    text, and its base's (--init-from) where that index is built."""

    def built(store: Path) -> int | None:  # bytes of text indexed, or None: no index
        try:
            index = index_of_store(store, build=False)
        except LstmgenError:
            return None
        return None if index is None else len(index)

    base = base_run(Path(run_dir))
    return {
        "this_run": built(Path(run_dir) / "data"),
        "base": None if base is None else {"run": str(base), "indexed": built(base / "data")},
    }


def _occurs(indexes: Sequence[TextIndex], pattern: bytes) -> bool:
    return any(index.occurs(pattern) for index in indexes)


def matching_lengths(text: str, indexes: Sequence[TextIndex]) -> np.ndarray:
    """For each character i of text, how many characters from i on stand in a training text
    (matching statistics: two pointers, about 2 searches a character)."""
    data = text.encode("utf-8")
    starts = np.flatnonzero((np.frombuffer(data, np.uint8) & 0xC0) != 0x80)
    bounds = [*starts.tolist(), len(data)]  # byte offset of each character, and the end
    count = len(starts)
    lengths = np.zeros(count, np.int64)
    end = 0
    for i in range(count):
        end = max(end, i)
        while end < count and _occurs(indexes, data[bounds[i] : bounds[end + 1]]):
            end += 1
        lengths[i] = end - i
    return lengths


def novelty(text: str, indexes: Sequence[TextIndex], window: int = WINDOW) -> dict:
    """{longest_copy: characters of the longest span of text found in the training text,
    copied_50: the share of its 50-character windows found there (None: shorter than one)}."""
    lengths = matching_lengths(text, indexes)
    windows = len(lengths) - window + 1
    share = float(np.mean(lengths[:windows] >= window)) if windows > 0 else None
    return {
        "longest_copy": int(lengths.max()) if len(lengths) else 0,
        f"copied_{window}": None if share is None else round(share, 4),
    }


def copy_note(longest: int, *, guarded: bool) -> str | None:
    """The one-line note for a plain sample that copies a long span, naming --max-copy."""
    if guarded or longest <= NOTE_ABOVE:
        return None
    return (
        f"a sample copies {longest} characters of the training text verbatim; "
        "--max-copy N keeps every copied span at most N characters"
    )


def novelty_or_none(text: str, run_dir: Path | None) -> dict | None:
    """The figures for text against a run's index when it is at hand (never built here)."""
    if run_dir is None:
        return None
    try:
        indexes = training_indexes(run_dir, build=False)
    except LstmgenError as e:
        warn(str(e))
        return None
    return novelty(text, indexes) if indexes else None
