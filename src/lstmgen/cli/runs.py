"""`lstmgen info` and `lstmgen plot`: what runs are and how they went, read from their files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lstmgen.cli.program import Run
from lstmgen.describe import info as describe_run
from lstmgen.plot import plot_command


def info(
    run: Run,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show a run's configuration, size and progress."""
    data = describe_run(run)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    for key, value in info_rows(data):
        print(f"{key:>14}  {value}")


def plot(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="Run directories to draw side by side.", metavar="RUN", show_default=False
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The PNG file to write.")] = Path(
        "curves.png"
    ),
) -> None:
    """Draw held-out and training bits/char of runs against time and tokens (a PNG)."""
    print(plot_command(runs, out))


def plural(count: float, word: str) -> str:
    """'1 epoch', '2 epochs', '1,234 steps'."""
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def info_rows(data: dict) -> list[tuple[str, str]]:
    """The lines of `lstmgen info`: (label, text)."""
    m, t, d = data["model"], data["train"], data["data"]
    best, last = data["best_val_bits_per_char"], data.get("last_val_bits_per_char")
    unit = "characters" if data["level"] == "char" else "tokens"
    rows = [
        ("run", data["run"]),
        (
            "model",
            f"{m['layers']}×{m['hidden']} {m['cell'].upper()}, embedding {m['embedding']}, "
            f"dropout {m['dropout']:.3g}, tied {m['tie_weights']}",
        ),
        ("parameters", f"{data['parameters']:,}"),
        ("level", data["level"]),
        ("vocabulary", f"{data['vocab_size']} {unit}, the unknown one included"),
        (
            "data",
            f"{d.get('train_tokens', 0):,} training / {d.get('val_tokens', 0):,} held-out "
            f"tokens from {', '.join(d.get('sources', []))}",
        ),
        (
            "training",
            f"batch {t['batch_size']} × seq {t['seq_len']}, lr {t['lr']:.3g}, seed {t['seed']}",
        ),
        (
            "progress",
            f"{plural(data['steps'], 'step')}, {plural(data['epochs'], 'epoch')}, "
            f"{plural(data['tokens_seen'], 'token')} seen, {data['elapsed_s']:.0f} s",
        ),
        (
            "final held-out",
            "not evaluated yet"
            if last is None
            else f"{last:.4f} bits/char"
            + (f" (step {data['last_val_step']:,})" if data.get("last_val_step") else ""),
        ),
        (
            "best held-out",
            "not evaluated yet"
            if best is None
            else f"{best:.4f} bits/char (step {data['best_step']:,})",
        ),
    ]
    for column in (d.get("conditions") or {}).get("columns", []):
        counts = ", ".join(f"{v} ({n:,})" for v, n in column.get("documents", {}).items())
        rows.append(("conditions", f"{column.get('column')}: {counts} documents"))
    for name, check in (data.get("int8") or {}).items():
        rows.append(
            (
                "int8 check",
                f"{name}: {check.get('int8_bits_per_char', 0):.4f} bits/char against fp32's "
                f"{check.get('fp32_bits_per_char', 0):.4f} on {check.get('tokens', 0):,} held-out "
                f"tokens" + ("" if check.get("current") else " (older weights: checked again)"),
            )
        )
    base = data.get("base")
    if base:
        rows.append(
            (
                "base run",
                f"{base.get('run')} ({base.get('checkpoint')} checkpoint, step "
                f"{base.get('step', 0):,}; trained on {', '.join(base.get('sources') or [])})",
            )
        )
    rows.append(("copy guard", copy_guard_line(data.get("copy_index") or {})))
    if data.get("processes"):
        rows.append(("processes", f"{data['processes']} (torchrun), in its last session"))
    sizing = data.get("sizing")
    if sizing:
        rows.append(
            (
                "sizing",
                f"hidden {sizing.get('hidden')} chosen for --max-time {t.get('max_time')} "
                f"(limited by {sizing.get('limited_by')}; "
                f"{sizing.get('tokens_per_s', 0):,} tokens/s measured)",
            )
        )
    finder = data.get("lr_finder")
    if finder:
        rows.append(("lr finder", f"peak lr {finder.get('suggestion', 0):.3g} from a range test"))
    vectors = data.get("embeddings")
    if vectors:
        rows.append(
            (
                "embeddings",
                f"{vectors.get('file')}: {vectors.get('vocabulary_coverage', 0):.1%} of the "
                f"vocabulary, {vectors.get('token_coverage', 0):.1%} of the training tokens",
            )
        )
    return rows


def copy_guard_line(cover: dict) -> str:
    """What --max-copy and the novelty figures check against: this run's training text (its
    index built or not yet), and a base run's where its index is at hand."""
    own = cover.get("this_run")
    line = (
        f"this run's training text (index of {own:,} bytes)"
        if own is not None
        else "this run's training text (index built at the first --max-copy or novelty figure)"
    )
    base = cover.get("base")
    if base:
        line += (
            f"; and the base run's ({base['indexed']:,} bytes)"
            if base.get("indexed") is not None
            else f"; not the base run's ({base['run']} has no copy index at hand)"
        )
    return line
