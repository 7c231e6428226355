"""The on-disk token store: train.bin / val.bin (raw token ids) + meta.json.

Preparation streams twice over the sources (count, then encode), so memory stays
flat whatever the corpus size. The held-out split is the last `val_fraction` of
the tokens; it is never trained on.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import LstmgenError
from .sources import Source
from .tokenizers import CharCounter, CharTokenizer

STORE_FORMAT = 1
DOC_SEPARATOR = "\n\n"


def smallest_dtype(vocab_size: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise ValueError(f"vocabulary of {vocab_size} does not fit in 32 bits")


def _texts(sources: Sequence[Source], encoding: str, errors: str, counts: dict) -> Iterator[str]:
    """Every chunk of every document, documents joined by DOC_SEPARATOR."""
    first = True
    for source in sources:
        for document in source.documents(encoding=encoding, errors=errors):
            if not first:
                yield DOC_SEPARATOR
            first = False
            counts["documents"] += 1
            yield from document


def prepare(
    sources: Sequence[Source],
    out: Path,
    *,
    val_fraction: float = 0.1,
    encoding: str = "utf-8",
    errors: str = "strict",
) -> CharTokenizer:
    """Fit a character vocabulary and encode the sources into a token store at out/."""
    if not 0 < val_fraction < 1:
        raise LstmgenError(f"--val-fraction {val_fraction} must be between 0 and 1 (e.g. 0.1)")
    if errors not in ("strict", "replace"):
        raise LstmgenError(f"--errors {errors!r} must be strict or replace")

    counter = CharCounter()
    counts = {"documents": 0}
    for text in _texts(sources, encoding, errors, counts):
        counter.update(text)
    total = counter.total
    if total == 0:
        names = ", ".join(s.name for s in sources)
        raise LstmgenError(f"the corpus is empty ({names} hold no text); give files with some text in them")
    tokenizer = CharTokenizer.fit(counter)
    dtype = smallest_dtype(tokenizer.vocab_size)
    val_tokens = max(2, int(round(total * val_fraction)))
    train_tokens = total - val_tokens
    if train_tokens < 2:
        raise LstmgenError(f"the corpus has only {total} characters; give at least a few thousand characters of text")

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    written = 0
    with open(tmp / "train.bin", "wb") as train_file, open(tmp / "val.bin", "wb") as val_file:
        for text in _texts(sources, encoding, errors, {"documents": 0}):
            ids = tokenizer.encode(text).astype(dtype)
            split = min(max(train_tokens - written, 0), len(ids))
            ids[:split].tofile(train_file)
            ids[split:].tofile(val_file)
            written += len(ids)
    meta = {
        "format": STORE_FORMAT,
        "level": tokenizer.kind,
        "dtype": dtype.name,
        "vocab_size": tokenizer.vocab_size,
        "train_tokens": train_tokens,
        "val_tokens": val_tokens,
        "characters": total,
        "documents": counts["documents"],
        "val_fraction": val_fraction,
        "split": "tail",
        "encoding": encoding,
        "errors": errors,
        "sources": [s.name for s in sources],
    }
    tokenizer.save(tmp / "tokenizer.json")
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # the store appears whole or not at all
    return tokenizer


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
            raise LstmgenError(f"{path} is not a prepared token store (meta.json missing); prepare it again")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise LstmgenError(f"{meta_path} is damaged (not valid JSON); prepare the data again") from None
        if meta.get("format", 0) > STORE_FORMAT:
            raise LstmgenError(f"{path} was written by a newer lstmgen (store format {meta['format']}); upgrade lstmgen")
        dtype = np.dtype(meta["dtype"])
        arrays = []
        for split in ("train", "val"):
            file = path / f"{split}.bin"
            expected = meta[f"{split}_tokens"] * dtype.itemsize
            if not file.is_file() or file.stat().st_size != expected:
                raise LstmgenError(f"{file} is missing or truncated; prepare the data again")
            arrays.append(np.memmap(file, dtype=dtype, mode="r"))
        return cls(path=path, meta=meta, train=arrays[0], val=arrays[1])
