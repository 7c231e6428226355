"""The on-disk token store: train.bin / val.bin (raw token ids), tokenizer.json, meta.json.

A conditioned store has, beside each side's ids, where each document starts
(`train.starts.npy`, int64 token positions of the document marks) and its condition numbers
(`train.conditions.npy`, (documents, columns)): plain .npy arrays, loaded without pickle.

prepare.py writes it (meta.json last, in a folder renamed into place when whole);
TokenStore opens it memory-mapped and refuses one that is incomplete.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmgen.data.textindex import INDEX_NAMES
from lstmgen.errors import LstmgenError
from lstmgen.files import read_json

STORE_FORMAT = 1
DOC_SEPARATOR = "\n\n"
SCAN_IDS = 1 << 22  # write_documents looks for document marks this many ids at a time


def smallest_dtype(vocab_size: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise ValueError(f"vocabulary of {vocab_size} does not fit in 32 bits")


def is_token_store(path: Path) -> bool:
    """Whether path looks like a prepared token store (its meta.json names train and val tokens)."""
    try:
        meta = read_json(Path(path) / "meta.json", fix="prepare the data again")
    except (OSError, LstmgenError):
        return False
    return isinstance(meta, dict) and "train_tokens" in meta and "val_tokens" in meta


def refuse_incomplete_store(path: str | Path) -> None:
    """A folder with train.bin but no valid meta.json is a store whose preparation was killed:
    never read it as text."""
    path = Path(path)
    if (
        path.is_dir()
        and ((path / "train.bin").exists() or (path / "val.bin").exists())
        and not is_token_store(path)
    ):
        raise LstmgenError(
            f"{path} is an incomplete token store (its preparation did not finish); "
            "prepare it again"
        )


DOCUMENT_FILES = (
    "train.starts.npy",
    "train.conditions.npy",
    "val.starts.npy",
    "val.conditions.npy",
)


# Every name a store's folder holds (the only ones --overwrite replaces); .stdin is the spool
# of standard input while it is prepared; INDEX_NAMES the copy index (textindex.py).
STORE_NAMES = (
    "train.bin",
    "val.bin",
    *DOCUMENT_FILES,
    "tokenizer.json",
    "meta.json",
    ".stdin",
    *INDEX_NAMES,
)


def store_files(path: Path) -> list[str]:
    """The files of a store, meta.json (which marks it whole) last."""
    documents = [name for name in DOCUMENT_FILES if (Path(path) / name).is_file()]
    return ["train.bin", "val.bin", *documents, "tokenizer.json", "meta.json"]


@dataclass(frozen=True)
class Documents:
    """Where each document of one side starts, and its condition numbers (one per column)."""

    starts: np.ndarray  # (D,) int64, ascending; the first is 0
    values: np.ndarray  # (D, C) int64

    def at(self, positions: np.ndarray) -> np.ndarray:
        """The condition numbers (..., C) of the documents holding these token positions."""
        document = np.searchsorted(self.starts, positions, side="right") - 1
        return self.values[np.maximum(document, 0)]


def write_documents(
    folder: Path, dtype: np.dtype, mark_id: int, labels: np.ndarray, sides: np.ndarray
) -> None:
    """Beside train.bin and val.bin: each document's start (found at its mark, the only place
    that id occurs) and its condition numbers; `labels` (D, C) and `sides` (D,) (0 train,
    1 val) are in the order the documents were written."""
    for code, side in enumerate(("train", "val")):
        ids = np.memmap(folder / f"{side}.bin", dtype=dtype, mode="r")
        found = [
            np.flatnonzero(ids[i : i + SCAN_IDS] == mark_id) + i
            for i in range(0, len(ids), SCAN_IDS)
        ]
        starts = np.concatenate([np.zeros(0, np.int64), *found]).astype(np.int64)
        values = labels[sides == code].reshape(-1, labels.shape[1] if labels.ndim == 2 else 0)
        if len(starts) != len(values) or (len(starts) and starts[0] != 0):
            raise LstmgenError(
                f"{side}.bin has {len(starts)} document marks for {len(values)} documents; "
                "a source holds the reserved character U+100000: prepare again"
            )
        np.save(folder / f"{side}.starts.npy", starts)
        np.save(folder / f"{side}.conditions.npy", values.astype(np.int64))


@dataclass
class TokenStore:
    """A prepared store, memory-mapped for reading."""

    path: Path
    meta: dict
    train: np.ndarray  # (N_train,) memmap
    val: np.ndarray  # (N_val,) memmap

    @classmethod
    def open(cls, path: str | Path) -> TokenStore:
        path = Path(path)
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            raise LstmgenError(
                f"{path} is not a prepared token store (meta.json missing); prepare it again"
            )
        try:
            meta = read_json(meta_path, fix="prepare the data again")
        except FileNotFoundError:
            raise LstmgenError(f"{meta_path} vanished while it was read; try again") from None
        if (
            not isinstance(meta, dict)
            or "train_tokens" not in meta
            or not (path / "tokenizer.json").is_file()
        ):
            raise LstmgenError(f"{path} is not a complete token store; prepare it again")
        if meta.get("format", 0) > STORE_FORMAT:
            raise LstmgenError(
                f"{path} was written by a newer lstmgen (store format {meta['format']}); "
                "upgrade lstmgen"
            )
        if meta.get("dtype") not in ("uint8", "uint16", "uint32") or not all(
            isinstance(meta.get(f"{side}_tokens"), int) and meta[f"{side}_tokens"] >= 0
            for side in ("train", "val")
        ):
            raise LstmgenError(f"{meta_path} is damaged (dtype or token counts); prepare again")
        dtype = np.dtype(meta["dtype"])
        arrays = []
        for split in ("train", "val"):
            file = path / f"{split}.bin"
            expected = meta[f"{split}_tokens"] * dtype.itemsize
            if not file.is_file() or file.stat().st_size != expected:
                raise LstmgenError(f"{file} is missing or truncated; prepare the data again")
            arrays.append(np.memmap(file, dtype=dtype, mode="r"))
        return cls(path=path, meta=meta, train=arrays[0], val=arrays[1])

    def documents(self, side: str) -> Documents | None:
        """Where each document of train or val starts and its conditions (None: unconditioned)."""
        if "conditions" not in self.meta:
            return None
        try:
            starts = np.load(self.path / f"{side}.starts.npy", allow_pickle=False)
            values = np.load(self.path / f"{side}.conditions.npy", allow_pickle=False)
        except (OSError, ValueError):
            raise LstmgenError(
                f"{self.path}: the document conditions of {side}.bin are missing or damaged; "
                "prepare the data again"
            ) from None
        if starts.ndim != 1 or values.ndim != 2 or len(starts) != len(values):
            raise LstmgenError(f"{self.path}: {side}.conditions.npy is damaged; prepare again")
        return Documents(starts.astype(np.int64), values.astype(np.int64))
