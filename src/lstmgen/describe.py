"""What a run is, read from its files without PyTorch: `lstmgen info` starts at once.

The config, the tokenizer, the progress stored with the weights (safetensors metadata, read
through numpy) and the last evaluation in metrics.jsonl.
"""

from __future__ import annotations

import json
from pathlib import Path

from lstmgen.config import RunConfig, bits_per_char
from lstmgen.data.novelty import copy_cover
from lstmgen.errors import LstmgenError
from lstmgen.files import json_line, read_lines, read_progress
from lstmgen.tokens import load_tokenizer


def info(run_dir: str | Path) -> dict:
    """What a run is: config, parameter count, progress, the final and best held-out bits/char,
    and the records of choices made creating it (sizing, lr_finder, embeddings)."""
    run_dir = Path(run_dir)
    config = RunConfig.read(run_dir)
    tokenizer = load_tokenizer(run_dir / "tokenizer.json")
    if config.model.vocab_size != tokenizer.vocab_size:
        raise LstmgenError(
            "config.json and tokenizer.json disagree on the vocabulary size; "
            "the run directory is inconsistent"
        )
    weights = run_dir / "model.safetensors"
    progress = read_progress(weights) if weights.exists() else {}
    best, last = progress.get("best_val_nats"), progress.get("last_val_nats")
    evaluated = last_evaluation(run_dir / "metrics.jsonl", up_to=progress.get("step", 0))

    def bits(nats: float | None) -> float | None:
        return None if nats is None else float(bits_per_char(nats, config.tokens_per_char))

    return {
        "run": str(run_dir),
        "level": config.level,
        "vocab_size": tokenizer.vocab_size,
        "parameters": config.model.parameter_count(),
        "model": config.model.to_dict(),
        "train": config.train.to_dict(),
        "data": config.corpus,
        "steps": progress.get("step", 0),
        "epochs": progress.get("epoch", 0),
        "tokens_seen": progress.get("tokens", 0),
        "elapsed_s": round(progress.get("elapsed_s", 0.0), 1),
        "rollbacks": progress.get("rollbacks", 0),  # times the loss diverged and training went back
        "lr_scale": progress.get("lr_scale", 1.0),
        "best_val_bits_per_char": bits(best),
        "best_val_nats_per_token": best,
        "best_step": progress.get("best_step"),
        # the latest weights' held-out figure, measured at last_val_step
        "last_val_bits_per_char": bits(last),
        "last_val_nats_per_token": last,
        "last_val_step": None if last is None or evaluated is None else evaluated["step"],
        "has_best": (run_dir / "best" / "model.safetensors").exists(),
        "copy_index": copy_cover(run_dir),  # bytes of training text indexed (None: not built)
        "int8": int8_checks(run_dir),
        **config.records,  # "sizing", "lr_finder", "embeddings": as in config.json
    }


def int8_checks(run_dir: Path) -> dict | None:
    """`--precision auto`'s held-out checks of int8 against fp32 (int8.json), per checkpoint
    ("best", "latest"), each marked current or not (the weights changed since), or None."""
    try:
        records = json.loads((run_dir / "int8.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    checks = {}
    for name, entry in records.items() if isinstance(records, dict) else ():
        weights = run_dir / ("best" if name == "best" else "") / "model.safetensors"
        if not isinstance(entry, dict):
            continue
        key = entry.get("key") or {}
        try:
            stat = weights.stat()
            current = key.get("bytes") == stat.st_size and key.get("mtime_ns") == stat.st_mtime_ns
        except OSError:
            current = False
        checks[name] = {**{k: v for k, v in entry.items() if k != "key"}, "current": current}
    return checks or None


def last_evaluation(path: Path, up_to: int | None = None) -> dict | None:
    """The last evaluation of the whole held-out split in metrics.jsonl (step, val_loss,
    val_bpc, ...) at or before step `up_to`, or None; curve points on a sample are skipped."""
    try:
        lines = read_lines(path, fix="move it away (it is not the log lstmgen writes)")
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        row = json_line(line)
        if not (isinstance(row, dict) and "val_loss" in row and isinstance(row.get("step"), int)):
            continue
        if row.get("val_sample"):
            continue
        if up_to is None or row["step"] <= up_to:
            return row
    return None
