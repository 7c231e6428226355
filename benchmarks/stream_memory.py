"""Peak memory (and time) of evaluate and classify, held whole (as before issue 33) against
streamed (now), paired in one run: each side runs as its own process; its peak RSS is the
child's getrusage ru_maxrss.

    python benchmarks/stream_memory.py [--evaluate-sizes 10M,50M] [--classify-docs 1e5,1e6] \\
        [--quick] [--out benchmarks/results/issue33]

The models are small runs (hidden 64) trained for a few steps on generated text (memory does
not depend on their quality): one without conditions for evaluate, one conditioned on a
stars column for classify. evaluate: `whole` reads the text into one string, encodes it and
calls metrics.evaluate_tokens (the old Model.evaluate); `stream` is `lstmgen evaluate RUN
FILE --json`. classify: `whole` reads every document and scores them in one Model.classify
call (the old api.classify); `stream` is `lstmgen classify RUN TABLE --format jsonl`.
Writes stream_memory.json (with os.getloadavg() at start and end) and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

WORDS = "the cat sat on a mat and dog ran to big red house with small green tree".split()  # noqa: SIM905

WHOLE_EVALUATE = """
import sys, lstmgen
from lstmgen.config import ReadOptions, bits_per_char
from lstmgen.data.documents import read_documents
from lstmgen.metrics import evaluate_tokens
model = lstmgen.load(sys.argv[1])
text = read_documents([sys.argv[2]], ReadOptions())
ids = model.tokenizer.encode(text)
nats, count = evaluate_tokens(model.module, ids)
print(float(bits_per_char(nats / count, len(ids) / len(text))))
"""

WHOLE_CLASSIFY = """
import sys, lstmgen
from lstmgen.config import DataConfig
from lstmgen.data.documents import labelled_documents
from lstmgen.data.reading import Tally
model = lstmgen.load(sys.argv[1])
docs = list(labelled_documents([sys.argv[2]], DataConfig(column="text"), Tally()))
result = model.classify([d[2] for d in docs])
print(len(result["predicted"]))
"""


def parse_count(text: str) -> int:
    units = {"K": 10**3, "M": 10**6, "G": 10**9}
    text = text.strip().upper().rstrip("B")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(float(text))


def sentences(chars: int, seed: int):
    rng = random.Random(seed)
    written = 0
    while written < chars:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))).capitalize() + ".\n"
        written += len(line)
        yield line


def child(args: list[str], log: Path) -> dict:
    """Run a process; its wall time, its own peak RSS (MB, os.wait4) and last line of output."""
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    lines = log.read_text().strip().splitlines()
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(args)} failed:\n" + "\n".join(lines[-20:]))
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "result": lines[-1][:200] if lines else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluate-sizes", default="10M,50M")
    parser.add_argument("--classify-docs", default="1e5,1e6")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves the script runs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/issue33"))
    args = parser.parse_args()
    if args.quick:
        args.evaluate_sizes, args.classify_docs = "200K,800K", "2000,8000"
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    work.mkdir(exist_ok=True)
    python, lstmgen = sys.executable, str(Path(sys.executable).with_name("lstmgen"))
    load_start = os.getloadavg()
    plain, run = work / "plain", work / "run"
    if not (plain / "config.json").exists():
        text = work / "train.txt"
        text.write_text("".join(sentences(60_000, 0)), encoding="utf-8")
        subprocess.run(
            [lstmgen, "train", text, "--out", plain, "--hidden", "64", "--embedding", "16",
             "--max-steps", "50", "--quiet"],
            check=True,
        )  # fmt: skip
    if not (run / "config.json").exists():
        table = work / "train.csv"
        with open(table, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["stars", "text"])
            for i in range(400):
                writer.writerow([1 + i % 3, "".join(sentences(300, i)).replace("\n", " ")])
        subprocess.run(
            [lstmgen, "train", table, "--out", run, "--column", "text", "--condition-column",
             "stars", "--hidden", "64", "--embedding", "16", "--max-steps", "50", "--quiet"],
            check=True,
        )  # fmt: skip
    rows = []
    for size in map(parse_count, args.evaluate_sizes.split(",")):
        text = work / f"text-{size}.txt"
        if not text.exists():
            with open(text, "w", encoding="utf-8") as f:
                f.writelines(sentences(size, size))
        for side, command in (
            ("stream", [lstmgen, "evaluate", str(plain), str(text), "--json"]),
            ("whole", [python, "-c", WHOLE_EVALUATE, str(plain), str(text)]),
        ):
            rows.append(
                {
                    "command": "evaluate",
                    "size": size,
                    "side": side,
                    **child(command, work / "log.txt"),
                }
            )
            print(rows[-1], flush=True)
    for count in map(parse_count, args.classify_docs.split(",")):
        table = work / f"docs-{count}.csv"
        if not table.exists():
            with open(table, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["text"])
                rng = random.Random(count)
                for _ in range(count):
                    writer.writerow([" ".join(rng.choice(WORDS) for _ in range(6))])
        for side, command in (
            ("stream", [lstmgen, "classify", str(run), str(table), "--column", "text",
                        "--format", "jsonl"]),
            ("whole", [python, "-c", WHOLE_CLASSIFY, str(run), str(table)]),
        ):  # fmt: skip
            rows.append(
                {
                    "command": "classify",
                    "size": count,
                    "side": side,
                    **child(command, work / "log.txt"),
                }
            )
            print({k: v for k, v in rows[-1].items() if k != "result"}, flush=True)
    result = {"load_start": load_start, "load_end": os.getloadavg(), "rows": rows}
    (args.out / "stream_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| command | size | side | peak RSS MB | wall s |\n|---|---:|---|---:|---:|")
    for r in rows:
        print(
            f"| {r['command']} | {r['size']:,} | {r['side']} | {r['peak_rss_mb']} | {r['wall_s']} |"
        )


if __name__ == "__main__":
    main()
