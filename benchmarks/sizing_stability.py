"""Does `--max-time` pick the same model alone and beside a busy process? (issue 25, item 3)

    python benchmarks/sizing_stability.py                       # 5 pairs, 120 s each run
    python benchmarks/sizing_stability.py --pairs 5 --budget 120 --save

Each pair trains `lstmgen train CORPUS --max-time BUDGET` (no --hidden: sizing chooses)
twice, each in its own process as a user would: once on the idle machine and once beside
`python3 -c "while True: pass"` (one busy core); the pairs alternate which runs first, so a
drift of the machine falls on both. Recorded per run: the hidden size chosen, the speed
sizing measured, and the final held-out bits/char. The goal: the same size in every pair, and
the busy run's final bits/char within 0.05 of the idle run's. The load average at start and
end goes into the result file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from contention import Busy  # one busy-loop process for a `with` block

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def train(corpus: Path, out: Path, budget: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LSTMGEN_THREADS")}
    args = ["train", str(corpus), "--out", str(out), "--max-time", f"{budget:g}s"]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "lstmgen", *args, "--overwrite", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        raise SystemExit(f"lstmgen {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    config = json.loads((out / "config.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "sizing": config.get("sizing"),
        "final_val_bpc": metrics[-1]["val_bpc"],
        "best_val_bpc": min(m["val_bpc"] for m in metrics),
        "tokens": metrics[-1]["tokens"],
        "wall_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--budget", type=float, default=120.0, help="--max-time of each run (s)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--save", action="store_true", help="also write benchmarks/results/")
    args = parser.parse_args()
    if not args.corpus.is_file():
        raise SystemExit(f"needs {args.corpus} (the shared corpora)")
    load_start = Path("/proc/loadavg").read_text().strip()
    pairs = []
    for i in range(args.pairs):
        order = ("idle", "busy") if i % 2 == 0 else ("busy", "idle")
        pair = {}
        for load in order:
            out = args.out / "sizing-stability-runs" / load
            if load == "busy":
                with Busy():
                    pair[load] = train(args.corpus, out, args.budget)
            else:
                pair[load] = train(args.corpus, out, args.budget)
        pair["same_size"] = pair["idle"]["sizing"]["hidden"] == pair["busy"]["sizing"]["hidden"]
        pair["bpc_gap"] = pair["busy"]["final_val_bpc"] - pair["idle"]["final_val_bpc"]
        pairs.append(pair)
        print(
            f"pair {i + 1}: hidden idle {pair['idle']['sizing']['hidden']} busy "
            f"{pair['busy']['sizing']['hidden']}; final bpc idle "
            f"{pair['idle']['final_val_bpc']:.4f} busy {pair['busy']['final_val_bpc']:.4f} "
            f"(gap {pair['bpc_gap']:+.4f})",
            flush=True,
        )
    record = {
        "corpus": str(args.corpus),
        "budget_s": args.budget,
        "machine": f"{platform.platform()}, {os.cpu_count()} cores",
        "load_average_start": load_start,
        "load_average_end": Path("/proc/loadavg").read_text().strip(),
        "pairs": pairs,
        "same_size": f"{sum(p['same_size'] for p in pairs)} of {len(pairs)}",
        "within_0.05_bpc": f"{sum(abs(p['bpc_gap']) <= 0.05 for p in pairs)} of {len(pairs)}",
    }
    print(
        record["same_size"], "pairs chose the same size;", record["within_0.05_bpc"], "within 0.05"
    )
    text = json.dumps(record, indent=2) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sizing-stability.json").write_text(text)
    if args.save:
        saved = ROOT / "benchmarks" / "results" / "issue25" / "sizing-stability.json"
        saved.write_text(text)
        print("saved", saved)


if __name__ == "__main__":
    main()
