"""The golden check: what a user keeps must not change when the code is reshaped.

    python tools/golden.py OUT_DIR            # writes OUT_DIR/golden.json (+ the runs it made)
    python tools/golden.py OUT_DIR --compare A.json

Through the command line only (the interface users have, stable across refactors) it
prepares one small corpus at the char, word and BPE levels, trains a tiny model at each
level for a fixed number of steps, resumes one, and generates with a fixed seed. It
records SHA-256 digests of the token stores (train.bin, val.bin, tokenizer.json, meta.json
without its timings), of every weight tensor, and the generated text. Run it before and
after a change on the same machine: the two JSON files must be equal.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

TINY = [
    "--hidden",
    "32",
    "--embedding",
    "16",
    "--layers",
    "1",
    "--batch-size",
    "4",
    "--seq-len",
    "16",
]
LEVELS = {"char": [], "word": [], "bpe": ["--vocab-size", "300"]}
TIMINGS = {"seconds", "input_bytes"}  # meta.json keys that depend on the clock or the spool


def make_corpus(folder: Path) -> Path:
    """Twelve small documents of sentences, with a few non-ASCII characters."""
    rng = random.Random(7)
    words = [
        "the",
        "cat",
        "sat",
        "on",
        "a",
        "mat",
        "and",
        "dog",
        "ran",
        "to",
        "big",
        "red",
        "house",
        "with",
        "small",
        "green",
        "tree",
        "café",
        "naïve",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        lines = [
            " ".join(rng.choice(words) for _ in range(rng.randint(3, 9))).capitalize() + "."
            for _ in range(60)
        ]
        (folder / f"doc{i:02d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def make_table(path: Path) -> Path:
    """A CSV of 400 short reviews: enough documents that whole ones are held out."""
    rng = random.Random(11)
    words = [
        "good",
        "bad",
        "great",
        "awful",
        "fine",
        "product",
        "works",
        "broke",
        "love",
        "hate",
        "it",
        "this",
        "é",
        "ñ",
    ]
    rows = ["id,text"] + [
        f'{i},"{" ".join(rng.choice(words) for _ in range(rng.randint(4, 20)))}."'
        for i in range(400)
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def lstmgen(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "lstmgen", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"lstmgen {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_digests(store: Path) -> dict:
    meta = json.loads((store / "meta.json").read_text(encoding="utf-8"))
    meta = {k: v for k, v in meta.items() if k not in TIMINGS}
    meta["sources"] = [Path(s).name for s in meta.get("sources", [])]
    return {
        "train.bin": digest(store / "train.bin"),
        "val.bin": digest(store / "val.bin"),
        "tokenizer.json": digest(store / "tokenizer.json"),
        "meta": hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest(),
    }


def weight_digests(path: Path) -> dict:
    from safetensors.numpy import load_file

    return {
        name: hashlib.sha256(array.tobytes()).hexdigest()[:16]
        for name, array in sorted(load_file(str(path)).items())
    }


def golden(out: Path) -> dict:
    corpus = make_corpus(out / "corpus")
    result: dict = {}
    for level, extra in LEVELS.items():
        store = out / f"store-{level}"
        lstmgen(
            "prepare",
            str(corpus),
            "--out",
            str(store),
            "--level",
            level,
            *extra,
            "--quiet",
            "--overwrite",
        )
        run = out / f"run-{level}"
        lstmgen(
            "train",
            str(corpus),
            "--out",
            str(run),
            "--level",
            level,
            *extra,
            *TINY,
            "--max-steps",
            "30",
            "--quiet",
            "--overwrite",
        )
        text = lstmgen("generate", str(run), "--seed", "3", "--length", "120", "--prime", "The ")
        many = lstmgen(
            "generate",
            str(run),
            "--seed",
            "5",
            "--length",
            "40",
            "--num-samples",
            "3",
            "--temperature",
            "1.0",
            "--top-k",
            "20",
            "--checkpoint",
            "latest",
        )
        result[level] = {
            "store": store_digests(store),
            "run_store": store_digests(run / "data"),
            "weights": weight_digests(run / "model.safetensors"),
            "best_weights": weight_digests(run / "best" / "model.safetensors"),
            "generated": text,
            "generated_many": many,
        }
    table = make_table(out / "reviews.csv")
    for level, extra in {"char": [], "word": ["--min-count", "2"]}.items():
        store = out / f"table-{level}"
        lstmgen(
            "prepare",
            str(table),
            "--column",
            "text",
            "--out",
            str(store),
            "--level",
            level,
            *extra,
            "--quiet",
            "--overwrite",
        )
        result[f"table-{level}"] = {"store": store_digests(store)}
    lstmgen("train", "--resume", str(out / "run-char"), "--max-steps", "45", "--quiet")
    result["char"]["resumed_weights"] = weight_digests(out / "run-char" / "model.safetensors")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--compare", type=Path, help="an earlier golden.json to compare with")
    args = parser.parse_args()
    result = golden(args.out)
    (args.out / "golden.json").write_text(
        json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    if args.compare is None:
        print(f"wrote {args.out / 'golden.json'}")
        return 0
    before = json.loads(args.compare.read_text(encoding="utf-8"))
    differences = [
        f"{level}.{key}"
        for level in before
        for key in before[level]
        if before[level][key] != result.get(level, {}).get(key)
    ]
    print(
        "golden check: identical"
        if not differences
        else f"golden check: DIFFERENT in {', '.join(differences)}"
    )
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
