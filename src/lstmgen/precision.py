"""The precision a loaded model computes in: fp32, bf16 or int8, and what `auto` chooses.

`auto` is int8 on a CPU with int8 dot-product instructions (int8.py) when the run's held-out
loss under int8 is within INT8_TOLERANCE bits/char of fp32's, measured on a bounded slice of
the held-out split (seconds) once per checkpoint and kept in the run's int8.json, keyed by the
weights file's size and modification time (new weights: measured again); elsewhere, and on a
GPU, today's fp32 path. `lstmgen info` shows the record.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from lstmgen.config import bits_per_char
from lstmgen.data.store import TokenStore
from lstmgen.device import mixed_precision
from lstmgen.errors import LstmgenError, say
from lstmgen.int8 import Int8Module, int8_missing
from lstmgen.metrics import evaluate_tokens
from lstmgen.model import LSTMLanguageModel

PRECISIONS = ("auto", "fp32", "bf16", "int8")
INT8_TOLERANCE = 0.01  # bits/char
CHECK_TOKENS = 16384  # held-out predictions the check scores (a sample spread over the split)
RECORD = "int8.json"
# Below this hidden size auto keeps fp32: onnxruntime's fixed cost per step outweighs int8's
# gain. Rough timings on the busy 2-core VNNI machine of issue 30 (one stream, one thread):
# 1x64 int8 0.38x the numpy stepper, 2x128 1.6x, 2x256 2.1x (benchmarks/int8_inference.py).
INT8_MIN_HIDDEN = 128


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise LstmgenError(
            f"--precision {precision!r} is not a precision; use auto, fp32, bf16 or int8"
        )
    return precision


def _key(weights: Path) -> dict:
    stat = weights.stat()
    return {"weights": weights.name, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def read_record(run_dir: Path, checkpoint: str, weights: Path) -> dict | None:
    """The int8 check of these weights kept in the run, or None (none yet, or older weights)."""
    try:
        entry = json.loads((run_dir / RECORD).read_text(encoding="utf-8")).get(checkpoint)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != _key(weights):
        return None
    return entry


def _write_record(run_dir: Path, checkpoint: str, entry: dict) -> None:
    """Keep the check beside the run (atomically); a read-only run just measures again."""
    path = run_dir / RECORD
    try:
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
            records = records if isinstance(records, dict) else {}
        except (OSError, ValueError):
            records = {}
        records[checkpoint] = entry
        handle, temporary = tempfile.mkstemp(dir=run_dir, prefix=".int8-", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(records, out, indent=2)
        os.replace(temporary, path)
    except OSError:
        pass


def measure_int8(
    module: LSTMLanguageModel, int8: Int8Module, store: TokenStore, ratio: float
) -> dict:
    """Held-out bits/char of fp32 and int8 on the same slice of the held-out split."""
    tokens = np.asarray(store.val, dtype=np.int64)
    documents = store.documents("val") if module.config.conditions else None
    result = {"tokens": min(CHECK_TOKENS, max(len(tokens) - 1, 0))}
    for name, model in (("fp32", module), ("int8", int8)):
        nats, count = evaluate_tokens(model, tokens, limit=CHECK_TOKENS, documents=documents)
        result[f"{name}_bits_per_char"] = round(
            float(bits_per_char(nats / max(count, 1), ratio)), 5
        )
    result["difference"] = round(result["int8_bits_per_char"] - result["fp32_bits_per_char"], 5)
    return result


def int8_check(
    module: LSTMLanguageModel,
    int8: Int8Module,
    run_dir: Path,
    checkpoint: str,
    weights: Path,
    ratio: float,
) -> dict | None:
    """This checkpoint's int8 check: kept, or measured now and kept; None without a store."""
    found = read_record(run_dir, checkpoint, weights)
    if found is not None:
        return found
    try:
        store = TokenStore.open(run_dir / "data")
        if len(store.val) < 2:
            return None
    except (OSError, LstmgenError, ValueError, KeyError):
        return None
    entry = {"key": _key(weights), **measure_int8(module, int8, store, ratio)}
    _write_record(run_dir, checkpoint, entry)
    return entry


def choose(
    precision: str,
    module: LSTMLanguageModel,
    device: torch.device,
    *,
    run_dir: Path | None = None,
    checkpoint: str = "best",
    weights: Path | None = None,
    tokens_per_char: float = 1.0,
    verbose: bool = False,
) -> tuple[torch.nn.Module, str, str]:
    """The module to compute with, its precision and why (a phrase for the user); verbose: say
    it once on stderr where auto chose other than today's fp32, or kept it for the loss."""
    module, chosen, why = _choose(
        precision, module, device, run_dir, checkpoint, weights, tokens_per_char
    )
    if verbose and precision == "auto" and (chosen == "int8" or "lose" in why):
        say(f"precision: {chosen} ({why})")
    return module, chosen, why


def _choose(precision, module, device, run_dir, checkpoint, weights, tokens_per_char):
    check_precision(precision)
    if precision == "fp32":
        return module, "fp32", "asked for"
    if precision == "bf16":
        mixed_precision(device, "bf16")  # a device without bf16: a one-line error
        return module.to(torch.bfloat16), "bf16", "asked for"
    if device.type != "cpu":
        if precision == "int8":
            raise LstmgenError("--precision int8 runs on the CPU; add --device cpu")
        return module, "fp32", f"auto on {device.type}"
    missing = int8_missing(module, explicit=precision == "int8")
    if missing is not None:
        if precision == "int8":
            raise LstmgenError(f"--precision int8: {missing}")
        return module, "fp32", f"auto: {missing}"
    if precision == "auto" and module.config.hidden < INT8_MIN_HIDDEN:
        return module, "fp32", f"auto: hidden {module.config.hidden} is fast enough in fp32"
    int8 = Int8Module(module)
    if precision == "int8":
        return int8, "int8", "asked for"
    check = None
    if run_dir is not None and weights is not None:
        check = int8_check(module, int8, run_dir, checkpoint, weights, tokens_per_char)
    if check is None:
        return module, "fp32", "auto: no held-out split to check int8 on"
    figures = (
        f"held-out {check['int8_bits_per_char']:.4f} bits/char against fp32's "
        f"{check['fp32_bits_per_char']:.4f}"
    )
    if check["difference"] > INT8_TOLERANCE:
        return module, "fp32", f"auto: int8 would lose too much ({figures})"
    return int8, "int8", f"auto: this CPU's int8 dot products, {figures}"
