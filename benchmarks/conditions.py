"""Conditioning on a rating (--condition-column Score) against an unconditioned model (issue 16).

    python benchmarks/conditions.py --time 3m
    python benchmarks/conditions.py --steps 6000    # equal work whatever the machine's load

Both models train for --time on the Amazon reviews in ../shared/data (column Text, HTML
stripped), with the same size (--hidden, 2 layers). The conditioned one reads the Score column;
the unconditioned one is given the same column with --min-condition-count above any count, so
every review gets the one <other> token: it learns from no rating, while its token store,
held-out documents and token positions are exactly those of the conditioned run. Both are
scored per rating on those held-out reviews (bits/char of the text, control tokens not
counted); the conditioned one is also scored with every review given each rating in turn
(`swapped`), and writes a review per rating. Runs go to runs/issue16/;
results to benchmarks/results/issue16/conditions-TIME.json and conditions-TIME.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
from pathlib import Path

import numpy as np

import lstmgen
from lstmgen.data.store import TokenStore
from lstmgen.metrics import nats_by_position

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RUNS = Path("runs/issue16")
RESULTS = Path(__file__).resolve().parent / "results" / "issue16"


def per_condition_scores(model, ids: np.ndarray, labels: np.ndarray, tokenizer) -> dict:
    """Bits/char per rating of held-out ids, documents found by the conditioned run's tokens."""
    nats = nats_by_position(model.module, ids.astype(np.int64))
    value_of = {i: v for v, i in tokenizer.control_ids.items()}
    starts = np.flatnonzero(np.isin(labels, list(value_of)))
    totals: dict[str, list] = {}
    for k, start in enumerate(starts):
        end = int(starts[k + 1]) if k + 1 < len(starts) else len(ids)
        row = totals.setdefault(value_of[int(labels[start])], [0, 0, 0.0])
        row[0] += 1
        row[1] += len(tokenizer.decode(labels[start + 1 : end]))
        row[2] += float(nats[start : end - 1].sum())
    return {
        value: {"documents": d, "characters": c, "bits_per_char": round(n / math.log(2) / c, 4)}
        for value, (d, c, n) in sorted(totals.items())
    }


def swapped(model, ids: np.ndarray, tokenizer) -> dict:
    """Held-out bits/char of each rating's reviews when every review is given one rating: if
    the model uses the rating, a review scores best under its own (the diagonal)."""
    table = {}
    for assumed in [v for v in tokenizer.conditions.values if v != "<other>"]:
        relabelled = np.where(
            np.isin(ids, list(tokenizer.is_control)), tokenizer.control_id(assumed), ids
        )
        scores = per_condition_scores(model, relabelled, ids, tokenizer)
        table[assumed] = {true: row["bits_per_char"] for true, row in scores.items()}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", default="3m")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="train this many steps instead of --time "
        "(equal work for both models on a machine whose load varies)",
    )
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--score-only", action="store_true", help="score the runs already trained (no training)"
    )
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = f"{args.steps}steps" if args.steps else args.time
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_at_start": os.getloadavg(),
        "time": None if args.steps else args.time,
        "max_steps": args.steps,
        "hidden": args.hidden,
    }
    common = {
        "column": "Text",
        "condition_column": "Score",
        "strip_html": True,
        **({"max_steps": args.steps} if args.steps else {"max_time": args.time}),
        "hidden": args.hidden,
        "layers": 2,
        "overwrite": True,
        "threads": args.threads,
        "quiet": True,
    }
    table = DATA / "amazon_reviews_sample.csv"
    runs = {
        "conditioned": RUNS / f"reviews-conditioned-{tag}",
        "unconditioned": RUNS / f"reviews-plain-{tag}",
    }
    saved = RESULTS / f"conditions-{tag}.json"
    if args.score_only:  # the training's record (load, steps) stays; the scores are made anew
        result = json.loads(saved.read_text())
    else:
        lstmgen.train([table], out=runs["conditioned"], **common)
        lstmgen.train([table], out=runs["unconditioned"], min_condition_count=10**9, **common)
    stores = {name: TokenStore.open(run / "data") for name, run in runs.items()}
    conditioned = lstmgen.load(runs["conditioned"])
    tokenizer = conditioned.tokenizer
    labels = np.asarray(stores["conditioned"].val)
    ids = {name: np.asarray(store.val) for name, store in stores.items()}
    text = ~np.isin(labels, list(tokenizer.is_control))
    assert np.array_equal(ids["conditioned"][text], ids["unconditioned"][text])  # same text
    result["per_condition"] = {
        name: per_condition_scores(lstmgen.load(run), ids[name], labels, tokenizer)
        for name, run in runs.items()
    }
    result["swapped"] = swapped(conditioned, labels, tokenizer)
    result["overall"] = {
        name: round(lstmgen.info(run)["best_val_bits_per_char"], 4) for name, run in runs.items()
    }
    result["steps"] = {name: lstmgen.info(run)["steps"] for name, run in runs.items()}
    result["samples"] = {
        value: conditioned.generate(
            condition=value, length=400, seed=1, temperature=0.7, stop=["\n\n"]
        )
        for value in tokenizer.conditions.values
    }
    if not args.score_only:
        result["load_average_at_end"] = os.getloadavg()
    (RESULTS / f"conditions-{tag}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"conditions-{tag}.md").write_text(report(result))
    print(report(result))


def report(result: dict) -> str:
    with_, without = (result["per_condition"][k] for k in ("conditioned", "unconditioned"))
    lines = [
        "| Score | held-out reviews | characters | conditioned bits/char | "
        "unconditioned bits/char |",
        "|---|---:|---:|---:|---:|",
    ]
    for value, row in with_.items():
        lines.append(
            f"| {value} | {row['documents']:,} | {row['characters']:,} | "
            f"{row['bits_per_char']:.4f} | {without[value]['bits_per_char']:.4f} |"
        )
    overall = result["overall"]
    lines.append(
        f"| all (best held-out) | | | {overall['conditioned']:.4f} | "
        f"{overall['unconditioned']:.4f} |"
    )
    if "swapped" in result:
        swaps = result["swapped"]
        lines += [
            "",
            "Conditioned model, every held-out review given one rating (rows: the rating "
            "given; columns: the review's own):",
            "",
            "| given \\ own | " + " | ".join(swaps) + " |",
            "|---|" + "---:|" * len(swaps),
        ]
        for given, row in swaps.items():
            lines.append(f"| {given} | " + " | ".join(f"{row[v]:.4f}" for v in swaps) + " |")
    lines += ["", "Samples (`generate --condition VALUE --temperature 0.7 --seed 1`):", ""]
    for value, text in result["samples"].items():
        lines.append(f"- **{value}**: {' '.join(text.split())[:300]}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
