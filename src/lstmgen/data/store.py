"""The on-disk token store: train.bin / val.bin (raw token ids), tokenizer.json, meta.json.

prepare.py writes it (meta.json last, in a folder renamed into place when whole);
TokenStore opens it memory-mapped and refuses one that is incomplete.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmgen.errors import LstmgenError
from lstmgen.files import read_json

STORE_FORMAT = 1
DOC_SEPARATOR = "\n\n"


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
