"""Learning curves: bits per character against time and tokens, drawn from metrics.jsonl.

Used for the curves.png each run keeps up to date, and by `lstmgen plot` to compare runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from lstmgen.errors import LstmgenError
from lstmgen.files import json_line, read_lines

TIME_UNITS = (("seconds", 1), ("minutes", 60), ("hours", 3600))


def read_curve(run_dir: Path) -> list[dict]:
    """The evaluation rows of a run's metrics.jsonl, in order (damaged lines skipped)."""
    rows = []
    path = run_dir / "metrics.jsonl"
    try:
        lines = read_lines(path, fix="move it away (it is not the log lstmgen writes)")
    except FileNotFoundError:
        return rows
    for line in lines:
        row = json_line(line)
        if isinstance(row, dict) and "val_bpc" in row and "elapsed_s" in row:
            rows.append(row)
    return rows


def held_out_series(rows: list[dict], x_key: str, scale: float) -> tuple[list, list]:
    """The held-out bits/char as two series, (xs, ys) each: evaluations of the whole held-out
    text, and curve points on a sample of it (they are not one curve: mixed, it zigzags)."""
    whole = [(r[x_key] / scale, r["val_bpc"]) for r in rows if not r.get("val_sample")]
    sampled = [(r[x_key] / scale, r["val_bpc"]) for r in rows if r.get("val_sample")]
    return [list(zip(*points, strict=True)) if points else [] for points in (whole, sampled)]


def plot_runs(run_dirs: list[Path], out: Path, *, labels: list[str] | None = None) -> bool:
    """Draw held-out (solid; a sample of it dotted) and training (dashed) bits/char of each
    run against training time and tokens seen, side by side, into the PNG file `out`; False
    (and no file) when no run has an evaluation yet."""
    curves = [(Path(d), read_curve(Path(d))) for d in run_dirs]
    if not any(rows for _, rows in curves):
        return False
    labels = labels or [d.name or str(d) for d, _ in curves]

    import matplotlib

    matplotlib.use("Agg")  # files only: no screen needed
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    longest = max((rows[-1]["elapsed_s"] for _, rows in curves if rows), default=0)
    unit, seconds = next((u, s) for u, s in TIME_UNITS if longest <= 120 * s or u == "hours")
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    by_time, by_tokens = figure.subplots(1, 2, sharey=True)
    for (_, rows), label in zip(curves, labels, strict=False):
        if not rows:
            continue
        color = None
        for axis, x_key, scale in ((by_time, "elapsed_s", seconds), (by_tokens, "tokens", 1e6)):
            x = [r[x_key] / scale for r in rows]
            whole, sampled = held_out_series(rows, x_key, scale)
            if whole:
                (line,) = axis.plot(*whole, marker="o", markersize=3, color=color, label=label)
                color = line.get_color()
            if sampled:  # its own series: a sample's figure runs above the whole text's
                (line,) = axis.plot(
                    *sampled,
                    ":",
                    marker="o",
                    markersize=4,
                    mfc="white",
                    color=color,
                    label=None if whole else label,
                )
                color = line.get_color()
            trained = [
                (xi, r["train_bpc"]) for xi, r in zip(x, rows, strict=False) if r.get("train_bpc")
            ]
            if trained:
                axis.plot(*zip(*trained, strict=False), "--", color=color, alpha=0.6)
    by_time.set_xlabel(f"training time ({unit})")
    by_tokens.set_xlabel("training tokens (millions)")
    by_time.set_ylabel("bits per character")
    for axis in (by_time, by_tokens):
        axis.grid(alpha=0.3)
    by_time.legend(fontsize="small")
    styles = [
        Line2D([], [], color="grey", marker="o", markersize=3, label="held-out"),
        Line2D([], [], color="grey", marker="o", mfc="white", ls=":", label="held-out, a sample"),
        Line2D([], [], color="grey", ls="--", alpha=0.6, label="training"),
    ]
    by_tokens.legend(handles=styles, fontsize="small")
    tmp = out.with_name(out.name + ".tmp")  # readers never see half a picture
    figure.savefig(tmp, format="png", dpi=90)
    os.replace(tmp, out)
    return True


def plot_command(run_dirs: list[Path], out: Path) -> Path:
    """`lstmgen plot`: check the runs, draw them, return the file written."""
    for run_dir in run_dirs:
        if not (run_dir / "config.json").is_file():
            raise LstmgenError(f"{run_dir} is not a run directory (no config.json)")
        if not read_curve(run_dir):
            raise LstmgenError(
                f"{run_dir} has no evaluations yet; train it further "
                f"(lstmgen train --resume {run_dir}) before plotting it"
            )
    if out.suffix.lower() != ".png":
        raise LstmgenError(f"--out {out}: plots are PNG files; give a name ending in .png")
    if not out.parent.is_dir():
        raise LstmgenError(f"--out {out}: the folder {out.parent} does not exist")
    if out.is_dir():
        raise LstmgenError(f"--out {out} is a folder; give a file name ending in .png")
    try:
        plot_runs(run_dirs, out)
    except OSError as e:
        out.with_name(out.name + ".tmp").unlink(missing_ok=True)
        raise LstmgenError(
            f"--out {out} cannot be written ({e.strerror}); choose another"
        ) from None
    return out
