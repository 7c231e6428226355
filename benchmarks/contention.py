"""Training and generation speed alone and beside one busy process, in one run (as ratios).

    python benchmarks/contention.py                      # tiny-shakespeare, 2x192 char model
    python benchmarks/contention.py --seconds 20 --markdown BENCHMARKS.md

Users' laptops are busy. For each setting below, lstmgen trains a 2x192 char model for
--seconds on ../shared/data/tinyshakespeare.txt and generates 3 x 2,000 characters (and one
sample of 2,000), first on the idle machine, then beside `python3 -c "while True: pass"`
(one busy core). Each measurement is its own `lstmgen` process, so thread settings made
through the environment take effect as a user's would. The goal (issue 17): beside one busy
process, at least 0.45 x the idle speed (a fair share of 2 cores), and the same model size
chosen by --max-time sizing alone and under load.

Settings measured: lstmgen's own choice (no environment), and forced thread counts with
the OpenMP wait policy left to the runtime (spinning), to show what the choice avoids.
Results go to benchmarks/out/contention.json (and benchmarks/results/ when given --save).
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

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
MODEL = ["--hidden", "192", "--layers", "2"]
SETTINGS = {
    "lstmgen default": {},
    "2 threads, spinning waits": {"LSTMGEN_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"},
    "1 thread": {"LSTMGEN_THREADS": "1"},
}


def lstmgen(args: list[str], env: dict) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",)}
    full_env.update(env)
    done = subprocess.run(
        [sys.executable, "-m", "lstmgen", *args], capture_output=True, text=True, env=full_env
    )
    if done.returncode != 0:
        raise SystemExit(f"lstmgen {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done


def train_speed(out: Path, seconds: float, env: dict) -> dict:
    """Training tokens per second of training time (tokens / elapsed_s of the run)."""
    lstmgen(
        [
            "train",
            str(CORPUS),
            "--out",
            str(out),
            *MODEL,
            "--max-time",
            f"{seconds}s",
            "--overwrite",
            "--quiet",
        ],
        env,
    )
    info = json.loads(lstmgen(["info", str(out), "--json"], env).stdout)
    return {
        "tokens": info["tokens_seen"],
        "elapsed_s": info["elapsed_s"],
        "tokens_per_s": info["tokens_seen"] / max(info["elapsed_s"], 1e-9),
    }


def generate_speed(run: Path, samples: int, env: dict) -> float:
    """Characters per second of `lstmgen generate` (the process's own timing, in its jsonl)."""
    done = lstmgen(
        [
            "generate",
            str(run),
            "--length",
            "2000",
            "--num-samples",
            str(samples),
            "--seed",
            "1",
            "--format",
            "jsonl",
        ],
        env,
    )
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    seconds = max(row["seconds"] for row in rows)
    return sum(len(row["text"]) for row in rows) / seconds


def sizing_choice(out: Path, env: dict) -> dict:
    """What --max-time 60s sizing picks here (it times each size; no training beyond 1 step)."""
    lstmgen(
        [
            "train",
            str(CORPUS),
            "--out",
            str(out),
            "--max-time",
            "60s",
            "--max-steps",
            "1",
            "--overwrite",
            "--quiet",
        ],
        env,
    )
    config = json.loads((out / "config.json").read_text())
    return config.get("sizing", {})


class Busy:
    """One busy-loop process for the duration of a `with` block."""

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


def measure(work: Path, seconds: float) -> dict:
    results: dict = {}
    reference = work / "reference"
    train_speed(reference, seconds, {})  # a trained run for the generation measurements
    for name, env in SETTINGS.items():
        row = {}
        for load in ("idle", "busy"):
            if load == "busy":
                busy = Busy().__enter__()
            try:
                row[f"train_{load}"] = train_speed(work / "run", seconds, env)["tokens_per_s"]
                row[f"generate1_{load}"] = generate_speed(reference, 1, env)
                row[f"generate3_{load}"] = generate_speed(reference, 3, env)
                if name == "lstmgen default":
                    row[f"sizing_{load}"] = sizing_choice(work / "sized", env)
            finally:
                if load == "busy":
                    busy.__exit__()
        for kind in ("train", "generate1", "generate3"):
            row[f"{kind}_ratio"] = row[f"{kind}_busy"] / row[f"{kind}_idle"]
        results[name] = row
        print(
            name,
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
            flush=True,
        )
    return results


def table(results: dict, seconds: float) -> str:
    lines = [
        f"\n{platform.machine()}, {os.cpu_count()} cores, 2x192 char model, tiny-shakespeare, "
        f"{seconds:g} s of training per cell; generation 2,000 characters per sample\n",
        "| setting | train tok/s idle | busy | ratio | generate 1 chars/s idle | busy | ratio "
        "| generate 3 chars/s idle | busy | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        cells = [name]
        for kind in ("train", "generate1", "generate3"):
            cells += [
                f"{r[f'{kind}_idle']:,.0f}",
                f"{r[f'{kind}_busy']:,.0f}",
                f"{r[f'{kind}_ratio']:.2f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    default = results["lstmgen default"]
    for load in ("idle", "busy"):
        sizing = default.get(f"sizing_{load}", {})
        lines.append(
            f"\nsizing for --max-time 60s, {load}: hidden {sizing.get('hidden')} "
            f"({sizing.get('tokens_per_s', 0):,} tokens/s measured)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="training time per cell")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument("--markdown", type=Path, help="append the table to this file")
    args = parser.parse_args()
    if not CORPUS.is_file():
        raise SystemExit(f"needs {CORPUS} (the shared corpora)")
    args.out.mkdir(parents=True, exist_ok=True)
    results = measure(args.out / "contention-runs", args.seconds)
    record = {"seconds": args.seconds, "machine": platform.platform(), "results": results}
    (args.out / "contention.json").write_text(json.dumps(record, indent=2) + "\n")
    text = table(results, args.seconds)
    print(text)
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
