"""Fine-tuning (--init-from) against training from scratch on a small corpus (issue 16).

    python benchmarks/transfer.py --stage base     # 10-minute base on Nietzsche + Jungle Book
    python benchmarks/transfer.py --stage tune     # 60-s fine-tunes (lr sweep) and scratch

The base trains for --base-time on ../shared/data/nietzsche.txt and junglebook.txt (lstmgen's
defaults, sized for the budget). Each fine-tune starts from its best checkpoint and trains
for --tune-time on the first 50 KB of tiny-shakespeare, at each lr of --lrs (warm-up
--warmup steps); the scratch model trains for the same time on the same 50 KB with lstmgen's
defaults. All are scored (best checkpoint) on tiny-shakespeare's last 10 %. Runs go to
runs/issue16/; results to benchmarks/results/issue16/transfer.json and transfer.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import lstmgen

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RUNS = Path("runs/issue16")
RESULTS = Path(__file__).resolve().parent / "results" / "issue16"
SMALL_BYTES = 50_000


def corpora() -> tuple[Path, str]:
    """The 50-KB training file and tiny-shakespeare's held-out last 10 % (as text)."""
    text = (DATA / "tinyshakespeare.txt").read_text(encoding="utf-8")
    RUNS.mkdir(parents=True, exist_ok=True)
    small = RUNS / "shakespeare-50k.txt"
    small.write_text(text[:SMALL_BYTES], encoding="utf-8")
    return small, text[int(len(text) * 0.9) :]


def scored(run: Path, held_out: str, **extra) -> dict:
    info = lstmgen.info(run)
    result = lstmgen.load(run).evaluate(held_out)
    return {
        "run": str(run),
        "held_out_bits_per_char": round(result["bits_per_char"], 4),
        "steps": info["steps"],
        "parameters": info["parameters"],
        "hidden": info["model"]["hidden"],
        "layers": info["model"]["layers"],
        "lr": info["train"]["lr"],
        "warmup_steps": info["train"]["warmup_steps"],
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=["base", "tune", "all"], default="all")
    parser.add_argument("--base-time", default="10m")
    parser.add_argument("--tune-time", default="60s")
    parser.add_argument("--lrs", default="1e-3,3e-3,1e-2")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    base = RUNS / "base"
    if args.stage in ("base", "all"):
        record = {"load_average_at_start": os.getloadavg(), "started": time.ctime()}
        sources = [DATA / "nietzsche.txt", DATA / "junglebook.txt"]
        lstmgen.train(
            sources, out=base, max_time=args.base_time, overwrite=True, threads=args.threads
        )
        record["base"] = lstmgen.info(base)
        (RESULTS / "transfer-base.json").write_text(json.dumps(record, indent=2) + "\n")
    if args.stage == "base":
        return
    small, held_out = corpora()
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_at_start": os.getloadavg(),
        "base": scored(base, held_out, base_time=args.base_time),
        "tune_time": args.tune_time,
        "fine_tuned": [],
    }
    for lr in (float(x) for x in args.lrs.split(",")):
        out = RUNS / f"tuned-lr{lr:g}"
        lstmgen.train(
            [small], out=out, init_from=str(base), max_time=args.tune_time, lr=lr,
            warmup_steps=args.warmup, overwrite=True, threads=args.threads, quiet=True,
        )  # fmt: skip
        result["fine_tuned"].append(scored(out, held_out))
    scratch = RUNS / "scratch"
    lstmgen.train(
        [small], out=scratch, max_time=args.tune_time, overwrite=True, threads=args.threads,
        quiet=True,
    )  # fmt: skip
    result["scratch"] = scored(scratch, held_out)
    result["load_average_at_end"] = os.getloadavg()
    (RESULTS / "transfer.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "transfer.md").write_text(table(result))
    print(table(result))


def table(result: dict) -> str:
    rows = [
        "| model | steps | lr | warm-up | held-out bits/char |",
        "|---|---:|---:|---:|---:|",
        f"| base only (no fine-tune) | {result['base']['steps']:,} | – | – | "
        f"{result['base']['held_out_bits_per_char']:.4f} |",
    ]
    for row in result["fine_tuned"]:
        rows.append(
            f"| fine-tuned {result['tune_time']} | {row['steps']:,} | {row['lr']:g} | "
            f"{row['warmup_steps']} | {row['held_out_bits_per_char']:.4f} |"
        )
    s = result["scratch"]
    rows.append(
        f"| from scratch {result['tune_time']} ({s['layers']}×{s['hidden']}) | {s['steps']:,} | "
        f"{s['lr']:g} | {s['warmup_steps']} | {s['held_out_bits_per_char']:.4f} |"
    )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
