"""New text, not quotes (issue 31): how much samples copy, what --max-copy costs, the index.

    python benchmarks/novelty.py --quick                 # a smoke run, under a minute
    python benchmarks/novelty.py                         # three corpora, two training lengths
    python benchmarks/novelty.py --index-sizes 1,100,1000   # + the 1 GB index (disk: ~6 GB)

For each corpus (tiny-shakespeare and nietzsche from ../shared/data, python-docs built in), a
run that can memorise (2x256, no dropout) trains for each --train-s; then, at fixed seeds:
- unguarded samples at temperature 0.5, 0.8 and 1.0: copied_50 and the longest copy;
- guarded ones (--max-copy 20, 40, 80) at 0.8: the same, and the largest copy seen (must be
  at most N), and the real-word share (the sample's words found among the training text's
  words) against the unguarded sample's;
- generation speed guarded / unguarded at 1 and 64 streams, paired: the two sides alternate
  (ABABAB) in one process on one machine, and the median of each is taken;
- the index: build time (MB/s), bytes on disk per character (text + array) and peak memory of
  the sort, for --index-sizes MB of text made by repeating the corpora (each in its own
  process, so its peak RSS is its own).

Results: benchmarks/results/issue31/novelty[-quick].json and .md, with the load average at
the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import lstmgen
from lstmgen.data.novelty import novelty, training_indexes

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results" / "issue31"
CORPORA = {
    "tiny-shakespeare": str(DATA / "tinyshakespeare.txt"),
    "python-docs": "python-docs",
    "nietzsche": str(DATA / "nietzsche.txt"),
}
TEMPERATURES = (0.5, 0.8, 1.0)
MAX_COPIES = (20, 40, 80)
WORD = re.compile(r"\w+")

SORT_CHILD = """
import json, resource, sys, time
from pathlib import Path
from lstmgen.data.textindex import sort_text
text, array = Path(sys.argv[1]), Path(sys.argv[2])
started = time.perf_counter()
dtype = sort_text(text, array, text.stat().st_size)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak_rss_bytes": peak, "dtype": dtype.name}))
"""


def figures(texts: list[str], indexes) -> dict:
    found = [novelty(text, indexes) for text in texts]
    shares = [f["copied_50"] for f in found if f["copied_50"] is not None]
    return {
        "copied_50": round(statistics.mean(shares), 4) if shares else None,
        "longest_copy_mean": statistics.mean(f["longest_copy"] for f in found),
        "longest_copy_max": max(f["longest_copy"] for f in found),
    }


def real_word_share(texts: list[str], words: set[str]) -> float:
    said = [w for text in texts for w in WORD.findall(text)]
    return round(sum(w in words for w in said) / max(len(said), 1), 4)


def speed(model, streams: int, length: int, max_copy: int, rounds: int) -> dict:
    """Tokens per second unguarded and guarded, alternating, median of each."""
    sides: dict[str, list[float]] = {"unguarded": [], "guarded": []}
    model.generate("", length=8, seed=0, num_samples=streams, max_copy=max_copy)  # warm
    for _ in range(rounds):
        for side, guard in (("unguarded", None), ("guarded", max_copy)):
            started = time.perf_counter()
            model.generate("", length=length, seed=1, num_samples=streams, max_copy=guard)
            sides[side].append(streams * length / (time.perf_counter() - started))
    medians = {side: statistics.median(values) for side, values in sides.items()}
    return {
        **{f"{side}_tokens_per_s": round(v, 1) for side, v in medians.items()},
        "guarded_over_unguarded": round(medians["guarded"] / medians["unguarded"], 3),
    }


def corpus_rows(name: str, source: str, args, runs: Path) -> list[dict]:
    rows = []
    for seconds in args.train_s:
        run = runs / f"{name}-{seconds}s"
        settings = {"hidden": args.hidden, "layers": args.layers, "dropout": 0.0}
        if args.quick:
            settings.update(embedding=16, batch_size=8, seq_len=32)
        lstmgen.train(
            [source], out=run, max_time=f"{seconds}s", quiet=True, overwrite=True, **settings
        )
        model = lstmgen.load(run)
        indexes = training_indexes(run, quiet=True)
        words = set(WORD.findall(bytes(indexes[0].text).decode("utf-8", errors="replace")))
        row: dict = {"corpus": name, "train_s": seconds, "unguarded": {}, "guarded": {}}
        seeds = {"length": args.length, "num_samples": args.samples, "seed": 7}
        for temperature in TEMPERATURES:
            texts = model.generate("", temperature=temperature, **seeds)
            row["unguarded"][str(temperature)] = figures(texts, indexes)
        plain = model.generate("", temperature=0.8, **seeds)
        row["real_word_share_unguarded"] = real_word_share(plain, words)
        for max_copy in MAX_COPIES:
            texts = model.generate("", temperature=0.8, max_copy=max_copy, **seeds)
            row["guarded"][str(max_copy)] = {
                **figures(texts, indexes),
                "real_word_share": real_word_share(texts, words),
            }
        row["speed"] = {
            str(streams): speed(model, streams, args.speed_length, 40, args.rounds)
            for streams in (1, 64)
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def count_characters(path: Path) -> int:
    """UTF-8 characters of a file (its bytes that are not continuation bytes), chunk by chunk."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    step = 1 << 26
    return sum(
        int(np.count_nonzero((data[i : i + step] & 0xC0) != 0x80))
        for i in range(0, len(data), step)
    )


def index_rows(sizes_mb: list[int], work: Path) -> list[dict]:
    """Index build speed, size and memory for text of each size (the corpora repeated)."""
    pieces = [Path(p).read_bytes() for p in CORPORA.values() if Path(p).is_file()]
    base = b"\n".join(pieces)
    rows = []
    for size_mb in sizes_mb:
        size = size_mb * 1_000_000
        text, array = work / f"text-{size_mb}MB", work / f"array-{size_mb}MB"
        with open(text, "wb") as f:
            written = 0
            while written < size:
                chunk = base[: size - written]
                f.write(chunk)
                written += len(chunk)
        child = subprocess.run(
            [sys.executable, "-c", SORT_CHILD, str(text), str(array)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        result = json.loads(child.stdout)
        characters = count_characters(text)
        on_disk = text.stat().st_size + array.stat().st_size
        rows.append(
            {
                "text_mb": size_mb,
                "build_s": round(result["seconds"], 2),
                "mb_per_s": round(size_mb / result["seconds"], 1),
                "bytes_per_char_on_disk": round(on_disk / characters, 2),
                "peak_rss_mb": round(result["peak_rss_bytes"] / 1e6, 1),
                "dtype": result["dtype"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        text.unlink()
        array.unlink()
    return rows


def markdown(result: dict) -> str:
    lines = [f"# Novelty (issue 31), {result['machine']}", ""]
    lines.append(f"load average at start {result['load_start']}, at end {result['load_end']}")
    lines += ["", "| corpus | train s | T | copied_50 | longest copy (mean / max) |"]
    lines += ["|---|---|---|---|---|"]
    for row in result["corpora"]:
        for t, f in row["unguarded"].items():
            lines.append(
                f"| {row['corpus']} | {row['train_s']} | {t} | {f['copied_50']} | "
                f"{f['longest_copy_mean']:.0f} / {f['longest_copy_max']} |"
            )
    lines += [
        "",
        "| corpus | train s | --max-copy | copied_50 | longest (max) | real words "
        "(guarded / plain) | speed 1 stream | speed 64 streams |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["corpora"]:
        for n, f in row["guarded"].items():
            lines.append(
                f"| {row['corpus']} | {row['train_s']} | {n} | {f['copied_50']} | "
                f"{f['longest_copy_max']} | {f['real_word_share']} / "
                f"{row['real_word_share_unguarded']} | "
                f"{row['speed']['1']['guarded_over_unguarded']}x | "
                f"{row['speed']['64']['guarded_over_unguarded']}x |"
            )
    lines += ["", "| text MB | build s | MB/s | bytes/char on disk | peak RSS MB |"]
    lines += ["|---|---|---|---|---|"]
    for row in result["index"]:
        lines.append(
            f"| {row['text_mb']} | {row['build_s']} | {row['mb_per_s']} | "
            f"{row['bytes_per_char_on_disk']} | {row['peak_rss_mb']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny, one corpus")
    parser.add_argument("--train-s", type=lambda s: [int(x) for x in s.split(",")],
                        default=[120, 600])  # fmt: skip
    parser.add_argument("--index-sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 100])  # fmt: skip
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--length", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--speed-length", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=Path, default=Path("runs/issue31"))
    args = parser.parse_args()
    corpora = dict(CORPORA)
    if args.quick:
        corpora = {"tiny-shakespeare": CORPORA["tiny-shakespeare"]}
        args.train_s, args.index_sizes, args.hidden, args.layers = [5], [1], 32, 1
        args.length, args.samples, args.speed_length, args.rounds = 300, 2, 50, 1
    args.runs.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores",
        "load_start": os.getloadavg(),
        "quick": args.quick,
        "corpora": [row for n, s in corpora.items() for row in corpus_rows(n, s, args, args.runs)],
        "index": index_rows(args.index_sizes, args.runs),
    }
    result["load_end"] = os.getloadavg()
    result["peak_rss_mb_this_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / ("novelty-quick" if args.quick else "novelty")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
