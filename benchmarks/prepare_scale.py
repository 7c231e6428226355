"""Speed and memory of `lstmgen prepare` at 10 MB, 100 MB and 1 GB (plain text, gzip, CSV).

    python benchmarks/prepare_scale.py [--sizes 10M,100M,1G] [--formats txt,gz,csv] \\
        [--out benchmarks/out]

Corpora are built from ../shared/data (paragraphs of the books and the Amazon reviews,
shuffled with a fixed seed and repeated up to the size), once, under --out. Each
`lstmgen prepare` runs as its own process; its wall time and peak RSS (getrusage of the
child) are measured. Writes prepare_scale.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
UNITS = {"K": 10**3, "M": 10**6, "G": 10**9}


def parse_size(text: str) -> int:
    text = text.strip().upper().rstrip("B")
    return int(float(text[:-1]) * UNITS[text[-1]]) if text[-1] in UNITS else int(text)


def paragraphs() -> list[str]:
    """Documents to repeat: paragraphs of the three books and the Amazon review texts."""
    docs = []
    for name in ("tinyshakespeare.txt", "nietzsche.txt", "junglebook.txt"):
        text = (SHARED / name).read_text(encoding="utf-8")
        docs += [p.strip() for p in text.split("\n\n") if p.strip()]
    with open(SHARED / "amazon_reviews_sample.csv", newline="", encoding="utf-8") as f:
        docs += [row["Text"] for row in csv.DictReader(f)]
    return docs


def build(kind: str, size: int, folder: Path) -> Path:
    """A corpus of about `size` bytes of text; reused when it exists."""
    path = folder / f"corpus-{size}.{kind}"
    if path.exists():
        return path
    rng = random.Random(size)
    docs = paragraphs()
    tmp = path.with_suffix(path.suffix + ".tmp")
    written = 0
    with (
        gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1)
        if kind == "txt.gz"
        else open(tmp, "w", encoding="utf-8", newline="")
    ) as f:
        writer = csv.writer(f) if kind == "csv" else None
        if writer:
            writer.writerow(["id", "text"])
        while written < size:
            rng.shuffle(docs)
            for i, doc in enumerate(docs):
                if writer:
                    writer.writerow([i, doc])
                else:
                    f.write(doc + "\n\n")
                written += len(doc.encode("utf-8")) + 2
                if written >= size:
                    break
    tmp.rename(path)
    return path


def run_prepare(corpus: Path, store: Path, extra: list[str]) -> dict:
    """Wall time and peak RSS of one `lstmgen prepare` (os.wait4 gives that child's own rusage)."""
    shutil.rmtree(store, ignore_errors=True)
    errors = store.with_name("stderr.txt")
    started = time.perf_counter()
    with open(errors, "w") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lstmgen",
                "prepare",
                str(corpus),
                "--out",
                str(store),
                "-q",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"prepare failed on {corpus}: {errors.read_text()}")
    meta = json.loads((store / "meta.json").read_text())
    shutil.rmtree(store)
    return {
        "wall_s": round(wall, 2),
        "prepare_s": meta["seconds"],
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "characters": meta["characters"],
        "documents": meta["documents"],
        "store_bytes_per_char": np.dtype(meta["dtype"]).itemsize,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="10M,100M,1G", help="comma-separated corpus sizes (10M, 1G, ...)"
    )
    parser.add_argument("--formats", default="txt,txt.gz,csv", help="txt, txt.gz and/or csv")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "out",
        help="folder for corpora and results",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in [parse_size(s) for s in args.sizes.split(",")]:
        for kind in args.formats.split(","):
            corpus = build(kind, size, args.out)
            extra = ["--column", "text"] if kind == "csv" else []
            row = {
                "format": kind,
                "size_mb": size / 1e6,
                "file_mb": round(corpus.stat().st_size / 1e6, 1),
            }
            row |= run_prepare(corpus, args.out / "store", extra)
            row["mb_per_s"] = round(size / 1e6 / row["wall_s"], 1)
            row["mb_per_s_in_prepare"] = round(size / 1e6 / row["prepare_s"], 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "prepare_scale.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(
        "\n| corpus | text MB | file MB | documents | wall s | MB/s (wall) "
        "| MB/s (in prepare) | peak RSS MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['format']} | {r['size_mb']:,.0f} | {r['file_mb']:,.1f} | {r['documents']:,} | "
            f"{r['wall_s']} | {r['mb_per_s']} | {r['mb_per_s_in_prepare']} | {r['peak_rss_mb']} |"
        )


if __name__ == "__main__":
    main()
