"""Char vs word vs BPE at equal wall-clock budgets: held-out bits/char, how English the output is.

    python benchmarks/levels.py                       # tinyshakespeare, 600 s per level
    python benchmarks/levels.py --budget 20           # a smoke run
    python benchmarks/levels.py --markdown BENCHMARKS.md

Each level trains with lstmgen's defaults (the real trainer; held-out = the last 10 %)
for --budget seconds. Then it generates --chars characters at T = --temperature and
counts the share of the generated words (letters and inner apostrophes, compared in
lower case) that occur in the training text. Writes benchmarks/out/levels.json and
prints a markdown table (appended to --markdown when given).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from pathlib import Path

import torch

import lstmgen

WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")


def words_of(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def generate_chars(model, chars: int, temperature: float, seed: int) -> str:
    """At least `chars` characters of one sample (tokens are streamed until there are enough)."""
    pieces, total = [], 0
    for piece in model.stream(length=chars, temperature=temperature, seed=seed):
        pieces.append(piece)
        total += len(piece)
        if total >= chars:
            break
    return "".join(pieces)[:chars]


def run_level(level: str, args, text: str) -> dict:
    run_dir = Path("benchmarks/out/runs") / f"levels-{level}-{int(args.budget)}s"
    started = time.perf_counter()
    result = lstmgen.train(
        [args.corpus],
        out=run_dir,
        overwrite=True,
        quiet=True,
        level=level,
        max_time=f"{args.budget}s",
    )
    info = lstmgen.info(run_dir)
    model = lstmgen.load(run_dir)
    generation_started = time.perf_counter()
    sample = generate_chars(model, args.chars, args.temperature, seed=0)
    generation_s = time.perf_counter() - generation_started
    training_text = text[: info["data"]["characters"] - info["data"]["val_characters"]]
    known = set(words_of(training_text))
    # Bits/char leaves out the cost of spelling an unknown word: say how much of the held-out
    # text that is.
    held_out = text[len(training_text) :]
    generated = words_of(sample)
    return {
        "level": level,
        "vocab_size": info["vocab_size"],
        "parameters": info["parameters"],
        "steps": result.steps,
        "epochs": round(result.epochs, 2),
        "tokens_per_s": round(result.tokens / max(result.elapsed_s, 1e-9)),
        "held_out_tokens_per_char": round(
            info["data"]["val_tokens"] / info["data"]["val_characters"], 4
        ),
        "best_val_bits_per_char": round(result.best_val_bits_per_char, 4),
        "held_out_unknown_char_share": round(
            model.tokenizer.unknown_characters(held_out) / max(len(held_out), 1), 4
        ),
        "generated_words": len(generated),
        "words_in_training_text": round(
            sum(w in known for w in generated) / max(len(generated), 1), 4
        ),
        "generation_s": round(generation_s, 2),
        "wall_s": round(time.perf_counter() - started, 1),
        "sample": sample[:400],
    }


def table(rows: list[dict], args) -> str:
    lines = [
        f"Levels on {Path(args.corpus).name}, {args.budget:g} s of training each, "
        f"{args.chars:,} generated characters at T = {args.temperature} "
        f"({platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}):",
        "",
        "| level | vocabulary | parameters | steps | tokens/s | tokens/char | held-out bits/char "
        "| held-out chars in unknown tokens | generated words found in the training text |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['level']} | {r['vocab_size']:,} | {r['parameters']:,} | {r['steps']:,} | "
            f"{r['tokens_per_s']:,} | {r['held_out_tokens_per_char']:.3f} | "
            f"{r['best_val_bits_per_char']:.3f} | {r['held_out_unknown_char_share']:.2%} | "
            f"{r['words_in_training_text']:.1%} of {r['generated_words']:,} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default="../shared/data/tinyshakespeare.txt")
    parser.add_argument(
        "--budget", type=float, default=600, help="seconds of training per level (wall clock)"
    )
    parser.add_argument(
        "--chars", type=int, default=20_000, help="characters to generate per level"
    )
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--levels", default="char,word,bpe")
    parser.add_argument("--markdown", type=Path, default=None, help="append the table to this file")
    args = parser.parse_args()

    text = Path(args.corpus).read_text(encoding="utf-8")
    rows = []
    for level in args.levels.split(","):
        rows.append(run_level(level, args, text))
        print(
            f"{level}: {json.dumps({k: v for k, v in rows[-1].items() if k != 'sample'})}",
            flush=True,
        )
    out = Path("benchmarks/out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "levels.json").write_text(
        json.dumps(
            {
                "budget_s": args.budget,
                "chars": args.chars,
                "temperature": args.temperature,
                "corpus": args.corpus,
                "levels": rows,
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    markdown = table(rows, args)
    print(markdown)
    for r in rows:
        print(f"--- {r['level']} ---\n{r['sample'][:300]}\n")
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write("\n" + markdown)


if __name__ == "__main__":
    main()
