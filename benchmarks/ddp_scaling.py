"""Training on 1 vs N processes (torchrun + DDP): tokens/s and held-out bits/char after equal time.

    python benchmarks/ddp_scaling.py                         # CPU: 1 vs 2 gloo processes, 60 s
    python benchmarks/ddp_scaling.py --seconds 120 --save cpu-2proc
    python benchmarks/ddp_scaling.py --gpu --seconds 300 --save gpu   # 1 GPU vs every GPU

Each setting is one `lstmgen train ... --nproc P` (P = 1: a plain run) on the same corpus with
the same model, --batch-size streams per process (so P processes read a P-times larger global
batch, as DDP users scale), for --seconds of training (--max-time). Tokens/s is the run's
training tokens over its training time, over every process; held-out bits/char is the final
model's. On CPU each process gets cores / P threads. The load average at the start is recorded:
on a shared machine, numbers are only comparable within one result file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def run(corpus: Path, out: Path, processes: int, args: argparse.Namespace) -> dict:
    """One training run of --seconds on `processes` processes; its speed and quality."""
    command = [
        sys.executable,
        "-m",
        "lstmgen",
        "train",
        str(corpus),
        "--out",
        str(out),
        "--max-time",
        f"{args.seconds}s",
        "--hidden",
        str(args.hidden),
        "--layers",
        "2",
        "--batch-size",
        str(args.batch_size),
        "--device",
        "cuda" if args.gpu else "cpu",
        "--nproc",
        str(processes),
        "-q",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LSTMGEN_THREADS")}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall_s = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    info = json.loads(
        subprocess.run(
            [sys.executable, "-m", "lstmgen", "info", str(out), "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    return {
        "processes": processes,
        "command": " ".join(command[1:]),
        "steps": info["steps"],
        "tokens": info["tokens_seen"],
        "training_s": round(info["elapsed_s"], 1),
        "wall_s": round(wall_s, 1),
        "tokens_per_s": round(info["tokens_seen"] / info["elapsed_s"]),
        "val_bits_per_char": info.get("last_val_bits_per_char"),
    }


def machine(args: argparse.Namespace) -> dict:
    import torch

    described = {
        "platform": platform.platform(),
        "cpu_cores": len(os.sched_getaffinity(0)),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if args.gpu:
        described["gpus"] = [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ]
    return described


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--seconds", type=int, default=60, help="training time of each run")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16, help="streams per process")
    parser.add_argument("--processes", type=int, nargs="+", help="default: 1 2 (GPU: 1 N)")
    parser.add_argument("--gpu", action="store_true", help="1 GPU against every GPU (NCCL)")
    parser.add_argument("--save", help="also write benchmarks/results/issue14/NAME.json")
    args = parser.parse_args()
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--gpu: no CUDA GPU is visible here")
        counts = args.processes or sorted({1, torch.cuda.device_count()})
    else:
        counts = args.processes or [1, 2]
    result = {"machine": machine(args), "settings": vars(args) | {"corpus": str(args.corpus)}}
    result["settings"]["processes"] = counts
    result["runs"] = []
    with tempfile.TemporaryDirectory() as tmp:
        for processes in counts:
            row = run(args.corpus, Path(tmp) / f"p{processes}", processes, args)
            result["runs"].append(row)
            print(json.dumps(row), flush=True)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    base = result["runs"][0]["tokens_per_s"]
    print("\n| processes | tokens/s | × 1 process | held-out bits/char | steps |")
    print("|---:|---:|---:|---:|---:|")
    for row in result["runs"]:
        bits = row["val_bits_per_char"]
        print(
            f"| {row['processes']} | {row['tokens_per_s']:,} | {row['tokens_per_s'] / base:.2f} "
            f"| {'-' if bits is None else f'{bits:.4f}'} | {row['steps']:,} |"
        )
    if args.save:
        path = ROOT / "benchmarks" / "results" / "issue14" / f"{args.save}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
