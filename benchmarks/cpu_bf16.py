"""fp32 against bf16 training on this CPU, side by side at equal time (issue 25).

    python benchmarks/cpu_bf16.py                 # 2×192 and 2×512, 5 minutes a run: ~20 min
    python benchmarks/cpu_bf16.py --time 20s --out /tmp/cpu-bf16   # a smoke run

For each size, two pairs: `lstmgen train --precision fp32` pinned to core 0 (`taskset -c 0`)
beside `--precision bf16` on core 1, one thread each, for the same --time; then the cores
swapped, so that a core's own speed (or its neighbour's work) falls on both sides alike. Each
run reports its training tokens/s (= characters/s: a char model) and held-out bits/char at
the end (`lstmgen info --json`), on tiny-shakespeare's last 10 %. The machine must be quiet:
the load average is recorded at the start and the end of each pair and of the whole run.
A CPU without bf16 (no avx512_bf16 / amx_bf16) gets the one-line error of --precision bf16,
recorded as what such a machine gets: fp32. Writes cpu_bf16.json and cpu_bf16.md to
benchmarks/results/issue25/ (--out to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
OUT = ROOT / "benchmarks" / "results" / "issue25"
SIZES = ((2, 192), (2, 512))
PRECISIONS = ("fp32", "bf16")


def cpu_report() -> dict:
    """The CPU's name, its bf16 flags, and lstmgen's own verdict on its bf16 (device.py)."""
    from lstmgen.device import cpu_bf16_missing, cpu_flags

    name = ""
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.partition(":")[2].strip()
                break
    flags = cpu_flags()
    return {
        "model_name": name or platform.processor(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "bf16_missing": cpu_bf16_missing(),  # None: lstmgen can train in bf16 here
        "cpus": os.cpu_count(),
    }


def start_run(store: Path, out: Path, layers: int, hidden: int, precision: str, core: int, args):
    """Start one `lstmgen train` on one core and one thread; its output to out.log."""
    command = [
        sys.executable, "-m", "lstmgen", "train", str(store), "--out", str(out),
        "--layers", str(layers), "--hidden", str(hidden), "--precision", precision,
        "--max-time", args.time, "--device", "cpu", "--threads", "1", "--seed", str(args.seed),
        "--quiet",
    ]  # fmt: skip
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(core), *command]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    log = open(out.with_suffix(".log"), "w")  # noqa: SIM115 (closed by finish_run)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    return process, log, out


def finish_run(process, log, out: Path) -> dict:
    """Wait for a run; its speed and held-out bits/char, or the error it ended with."""
    code = process.wait()
    log.close()
    text = out.with_suffix(".log").read_text(errors="replace").strip()
    if code != 0:
        return {"error": text.splitlines()[-1] if text else f"exit {code}"}
    done = subprocess.run(
        [sys.executable, "-m", "lstmgen", "info", str(out), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(done.stdout)
    window = [
        json.loads(line)["tokens_per_s"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if json.loads(line).get("tokens_per_s")
    ]
    return {
        "steps": info["steps"],
        "tokens": info["tokens_seen"],
        "elapsed_s": info["elapsed_s"],
        "tokens_per_s": round(info["tokens_seen"] / max(info["elapsed_s"], 1e-9), 1),
        "tokens_per_s_median_window": round(statistics.median(window), 1) if window else None,
        "val_bpc_last": info["last_val_bits_per_char"],
        "val_bpc_best": info["best_val_bits_per_char"],
        "precision": info["train"].get("precision"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time", default="5m", help="training time of each run [5m]")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--out", type=Path, default=OUT, help=f"result folder [{OUT}]")
    args = parser.parse_args()
    if not args.corpus.is_file():
        raise SystemExit(f"{args.corpus} does not exist; give the text with --corpus")
    load_at_start = os.getloadavg()
    started = time.monotonic()
    cpu = cpu_report()
    pinned = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    work = Path(tempfile.mkdtemp(prefix="lstmgen-cpu-bf16-"))
    try:
        store = work / "store"
        subprocess.run(
            [sys.executable, "-m", "lstmgen", "prepare", str(args.corpus), "--out", str(store)],
            check=True,
            capture_output=True,
        )
        pairs = []
        for layers, hidden in SIZES:
            for swap in (False, True):
                cores = dict(zip(PRECISIONS, (1, 0) if swap else (0, 1), strict=True))
                pair_load = os.getloadavg()
                running = {}
                for precision in PRECISIONS:
                    out = work / f"{layers}x{hidden}-{precision}-core{cores[precision]}"
                    running[precision] = start_run(
                        store, out, layers, hidden, precision, cores[precision], args
                    )
                runs = {p: finish_run(*running[p]) | {"core": cores[p]} for p in PRECISIONS}
                pair = {
                    "size": f"{layers}x{hidden}",
                    "runs": runs,
                    "load_average_at_start": pair_load,
                    "load_average_at_end": os.getloadavg(),
                }
                if all("error" not in run for run in runs.values()):
                    fp32, bf16 = runs["fp32"], runs["bf16"]
                    pair["bf16_speed_ratio"] = round(bf16["tokens_per_s"] / fp32["tokens_per_s"], 3)
                    pair["bf16_minus_fp32_bpc"] = round(
                        bf16["val_bpc_last"] - fp32["val_bpc_last"], 4
                    )
                pairs.append(pair)
                print(json.dumps(pair), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    result = {
        "time_per_run": args.time,
        "corpus": args.corpus.name,
        "cpu": cpu,
        "pinned_one_core_each": pinned,
        "pairs": pairs,
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "seconds": round(time.monotonic() - started),
        "commit": commit,
        "machine": platform.platform(),
        "python": platform.python_version(),
        "command": " ".join(["python", "benchmarks/cpu_bf16.py", *sys.argv[1:]]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_bf16.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = to_markdown(result)
    (args.out / "cpu_bf16.md").write_text(markdown)
    print(markdown)


def to_markdown(result: dict) -> str:
    """The pairs as a table: each run's tokens/s and held-out bits/char, and bf16 against fp32."""
    cpu = result["cpu"]
    lines = [
        f"fp32 against bf16 training, {result['time_per_run']} a run on {result['corpus']}, "
        f"one thread each{', pinned to cores 0 and 1' if result['pinned_one_core_each'] else ''}"
        f" (commit {result['commit']}).",
        f"CPU: {cpu['model_name']}; avx512_bf16 {cpu['avx512_bf16']}, amx_bf16 "
        f"{cpu['amx_bf16']}; lstmgen's bf16 check: {cpu['bf16_missing'] or 'bf16 available'}.",
        f"Load average at start {result['load_average_at_start'][0]:.2f}, at end "
        f"{result['load_average_at_end'][0]:.2f}.",
        "",
        "| size | cores fp32/bf16 | fp32 tokens/s | bf16 tokens/s | bf16 ÷ fp32 | "
        "fp32 bpc | bf16 bpc | bf16 − fp32 bpc | load at start / end |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for pair in result["pairs"]:
        fp32, bf16 = pair["runs"]["fp32"], pair["runs"]["bf16"]

        def cell(run: dict, key: str, form: str) -> str:
            return format(run[key], form) if key in run else run.get("error", "")[:60]

        lines.append(
            f"| {pair['size']} | {fp32['core']}/{bf16['core']} | "
            f"{cell(fp32, 'tokens_per_s', ',.0f')} | {cell(bf16, 'tokens_per_s', ',.0f')} | "
            f"{pair.get('bf16_speed_ratio', '–')} | "
            f"{cell(fp32, 'val_bpc_last', '.4f')} | {cell(bf16, 'val_bpc_last', '.4f')} | "
            f"{pair.get('bf16_minus_fp32_bpc', '–')} | {pair['load_average_at_start'][0]:.2f} / "
            f"{pair['load_average_at_end'][0]:.2f} |"
        )
    for size in dict.fromkeys(pair["size"] for pair in result["pairs"]):
        ratios = [p.get("bf16_speed_ratio") for p in result["pairs"] if p["size"] == size]
        gaps = [p.get("bf16_minus_fp32_bpc") for p in result["pairs"] if p["size"] == size]
        if ratios and all(r is not None for r in ratios) and len(ratios) == 2:
            lines.append(
                f"\n{size}: bf16 trains at {statistics.mean(ratios):.2f}× fp32's tokens/s and "
                f"ends {statistics.mean(gaps):+.4f} bits/char from it (mean of the two pairs)."
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
