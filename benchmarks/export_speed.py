"""An exported model's generation speed, size and quality: onnxruntime (Python) at 1 and 64
streams and onnxruntime-web in headless Chromium at 1 stream, beside lstmgen's own generation
(`Model.generate`, the path of `lstmgen generate`) in the same run; fp32 and int8 (issue 24).

    python benchmarks/export_speed.py                        # 3x256 char model, tiny-shakespeare
    python benchmarks/export_speed.py --run runs/shakespeare # an existing run instead
    python benchmarks/export_speed.py --dry-run              # tiny, seconds: the steps only

Without --run, a char model (--layers x --hidden) trains on tiny-shakespeare for --time. It is
exported twice with `lstmgen export --format web` (fp32, and --quantize int8). Each side
generates --length tokens per stream at temperature 0.8, --threads CPU threads each (1 by
default: a machine's speed per core, one side at a time); characters/s counts every stream's
text over the wall time including the prime. The browser's figure is the page's own chars/s.
Sizes are model.onnx's bytes; held-out bits/char is onnxruntime's over the run's held-out
tokens (one stream, up to --held-out tokens) for fp32 and int8, beside the run's evaluation.
The machine must be quiet: the load average is recorded at the start and the end. Writes
export_speed.json and export_speed.md to benchmarks/results/issue24/ (--out to change).
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
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
OUT = ROOT / "benchmarks" / "results" / "issue24"
STREAMS = (1, 64)


def lstmgen(*args: str, threads: int | None) -> None:
    """Run the command; threads None: lstmgen's own choice (training)."""
    env = dict(os.environ)
    for name in ("LSTMGEN_THREADS", "OMP_NUM_THREADS"):
        env.pop(name, None)
        if threads:
            env[name] = str(threads)
    subprocess.run([sys.executable, "-m", "lstmgen", *args], check=True, env=env)


def train(work: Path, args) -> Path:
    """A char model on the corpus (or, dry, on a small made-up text)."""
    corpus = args.corpus
    if args.dry_run:
        corpus = work / "corpus.txt"
        words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "big", "red"]
        rng = np.random.default_rng(0)
        corpus.write_text(" ".join(rng.choice(words, 6000)) + "\n", encoding="utf-8")
    size = ["--layers", str(args.layers), "--hidden", str(args.hidden)]
    limit = ["--max-steps", "30"] if args.dry_run else ["--max-time", args.time]
    lstmgen("train", str(corpus), "--out", str(work / "run"), *size, *limit, "-q", threads=None)
    return work / "run"


def rate(make, characters_of) -> dict:
    """Time make() (after one untimed call: first-call costs are not speed); characters/s
    over all its texts."""
    make()
    started = time.perf_counter()
    texts = make()
    elapsed = time.perf_counter() - started
    characters = sum(characters_of(t) for t in texts)
    return {"characters": characters, "seconds": round(elapsed, 3),
            "characters_per_second": round(characters / elapsed, 1)}  # fmt: skip


def torch_texts(model, prime: str, settings: dict) -> list[str]:
    texts = model.generate(prime, **settings)
    return texts if isinstance(texts, list) else [texts]


def python_speeds(run: Path, folders: dict, args) -> list[dict]:
    import torch

    import lstmgen as api
    from lstmgen.export.generate import onnx_samples
    from lstmgen.export.onnx import OnnxModel

    torch.set_num_threads(args.threads)
    model = api.load(run, device="cpu")
    rows = []
    for streams in STREAMS:
        settings = {"length": args.length, "temperature": 0.8, "seed": 1, "num_samples": streams}
        made = rate(partial(torch_texts, model, args.prime, settings), len)
        rows.append({"runtime": "lstmgen generate (PyTorch)", "streams": streams, **made})
        for name, folder in folders.items():
            graph = OnnxModel(folder / "model.onnx", threads=args.threads)
            made = rate(partial(onnx_samples, graph, model, args.prime, **settings), len)
            rows.append({"runtime": f"onnxruntime {name}", "streams": streams, **made})
    return rows


def browser_speeds(folders: dict, args) -> list[dict]:
    from lstmgen.export import browser

    why = browser.missing()
    if why:
        return [{"runtime": "onnxruntime-web", "skipped": why}]
    rows = []
    for name, folder in folders.items():
        with browser.page(folder) as page:
            page.generate(args.prime, temperature=0.8, length=20, seed=1)  # warm up
            text, chars_per_s = page.generate(
                args.prime, temperature=0.8, length=args.length, seed=1
            )
        rows.append({"runtime": f"onnxruntime-web {name} (Chromium)", "streams": 1,
                     "characters": len(text), "characters_per_second": chars_per_s})  # fmt: skip
    return rows


def quality(run: Path, folders: dict, args) -> dict:
    import lstmgen as api
    from lstmgen.data.store import TokenStore
    from lstmgen.export.generate import onnx_bits_per_char
    from lstmgen.export.onnx import OnnxModel

    model = api.load(run, device="cpu")
    ids = np.asarray(TokenStore.open(run / "data").val[: args.held_out], dtype=np.int64)
    characters = len(model.tokenizer.decode(ids))
    manifest = json.loads((folders["fp32"] / "lstmgen-model.json").read_text(encoding="utf-8"))
    result = {"held_out_tokens": len(ids), "run_best_val_bpc": manifest["held_out_bits_per_char"]}
    for name, folder in folders.items():
        graph = OnnxModel(folder / "model.onnx", threads=args.threads)
        result[f"{name}_bpc"] = round(onnx_bits_per_char(graph, ids, characters), 4)
        result[f"{name}_bytes"] = (folder / "model.onnx").stat().st_size
    result["safetensors_bytes"] = (run / "model.safetensors").stat().st_size
    return result


def to_markdown(result: dict) -> str:
    lines = [f"Export speed on {result['machine']} ({result['threads']} thread(s) a side, "
             f"load {result['load_start']} → {result['load_end']})", "",
             "| runtime | streams | characters/s |", "|---|---:|---:|"]  # fmt: skip
    for row in result["speeds"]:
        if "skipped" in row:
            lines.append(f"| {row['runtime']} | – | skipped: {row['skipped']} |")
        else:
            lines.append(f"| {row['runtime']} | {row['streams']} | "
                         f"{row['characters_per_second']:,.0f} |")  # fmt: skip
    q = result["quality"]
    lines += ["", "| model.onnx | bytes | held-out bits/char |", "|---|---:|---:|"]
    for name in ("fp32", "int8"):
        lines.append(f"| {name} | {q[name + '_bytes']:,} | {q[name + '_bpc']:.4f} |")
    lines.append(f"\nThe run's own evaluation: {q['run_best_val_bpc']} bits/char.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="an existing run (else one is trained)")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--time", default="10m", help="training time without --run [10m]")
    parser.add_argument("--length", type=int, default=2000, help="tokens per stream [2000]")
    parser.add_argument("--prime", default="ROMEO:")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--held-out", type=int, default=100_000, help="tokens scored [100000]")
    parser.add_argument("--out", type=Path, help=f"result folder [{OUT}]")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes: check the steps")
    args = parser.parse_args()
    if args.dry_run:
        args.layers, args.hidden, args.length, args.held_out = 1, 32, 50, 2000
        args.prime = "the "
        args.out = args.out or ROOT / "benchmarks" / "out" / "export_speed_dry"
    out = args.out or OUT
    os.environ["OMP_NUM_THREADS"] = os.environ["LSTMGEN_THREADS"] = str(args.threads)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="export-speed-") as work:
        work = Path(work)
        run = args.run or train(work, args)
        folders = {"fp32": work / "web-fp32", "int8": work / "web-int8"}
        for name, folder in folders.items():
            quantize = ["--quantize", "int8"] if name == "int8" else []
            lstmgen("export", str(run), "--format", "web", "--out", str(folder), *quantize,
                    threads=args.threads)  # fmt: skip
        speeds = python_speeds(run, folders, args) + browser_speeds(folders, args)
        result = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "threads": args.threads,
            "layers": args.layers,
            "hidden": args.hidden,
            "length": args.length,
            "dry_run": args.dry_run,
            "speeds": speeds,
            "quality": quality(run, folders, args),
            "load_start": round(load_start, 2),
            "load_end": round(os.getloadavg()[0], 2),
        }
    out.mkdir(parents=True, exist_ok=True)
    (out / "export_speed.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "export_speed.md").write_text(to_markdown(result), encoding="utf-8")
    print(to_markdown(result))


if __name__ == "__main__":
    main()
