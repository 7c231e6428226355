"""Conditions at every step on real reviews (issue 22): does the rating steer the text?

    python benchmarks/conditions.py --steps 8000          # both models, side by side
    python benchmarks/conditions.py --steps 8000 --score-only

Two models of the same size train for the same number of steps (the machine's load cannot
decide the comparison) on the Amazon reviews in ../shared/data (column Text, HTML stripped),
side by side, one core each (`taskset -c 0` / `-c 1`, one thread each). The conditioned one
reads the Score column. The unconditioned one reads it too, with --min-condition-count above
any count: every review gets the one <other> value, a constant input that says nothing, while
its token store, held-out reviews and token positions are exactly the conditioned run's.

Reported, in benchmarks/results/issue22/conditions-STEPS.json and .md:
- held-out bits/char per rating, conditioned against unconditioned;
- the swapped table: each held-out review scored under each rating (bits/char);
- classification of the held-out reviews by Bayes' rule (5-way accuracy, macro-F1, 4-5 vs 1-2
  ROC AUC) beside a TF-IDF + logistic-regression baseline (scikit-learn) trained on the same
  training reviews;
- 20 samples per rating at fixed seeds, and the share the TF-IDF baseline calls negative (for
  1-2) and positive (for 4-5): an independent check that the text follows the rating.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import lstmgen
from lstmgen.classification import report, two_group_auc
from lstmgen.data.store import TokenStore

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RUNS = Path("runs/issue22")
RESULTS = Path(__file__).resolve().parent / "results" / "issue22"
POSITIVE, NEGATIVE = ("4", "5"), ("1", "2")


def train_side_by_side(table: Path, runs: dict, steps: int, hidden: int) -> dict:
    """Both runs at once, each on its own core with one thread; their wall times."""
    common = ["--column", "Text", "--strip-html", "--condition-column", "Score"]
    common += ["--max-steps", str(steps), "--hidden", str(hidden), "--layers", "2"]
    common += ["--threads", "1", "--overwrite", "-q"]
    extra = {"conditioned": [], "unconditioned": ["--min-condition-count", str(10**9)]}
    started, processes = time.perf_counter(), {}
    for core, (name, run) in enumerate(runs.items()):
        command = [sys.executable, "-m", "lstmgen", "train", str(table), "--out", str(run)]
        processes[name] = subprocess.Popen(
            ["taskset", "-c", str(core), *command, *common, *extra[name]],
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    seconds = {}
    for name, process in processes.items():
        if process.wait() != 0:
            raise SystemExit(f"training {name} failed")
        seconds[name] = round(time.perf_counter() - started, 1)
    return seconds


def held_out_reviews(run: Path) -> tuple[list[str], list[str]]:
    """The held-out reviews of a conditioned run's store as text, and their ratings."""
    return _documents(run, "val")


def _documents(run: Path, side: str) -> tuple[list[str], list[str]]:
    store = TokenStore.open(run / "data")
    tokenizer = lstmgen.load(run).tokenizer
    ids, documents = (
        np.asarray(store.train if side == "train" else store.val),
        store.documents(side),
    )
    column = tokenizer.conditions.columns[0]
    ends = [*documents.starts[1:].tolist(), len(ids)]
    texts = [
        tokenizer.decode(ids[start + 1 : end]).strip()
        for start, end in zip(documents.starts.tolist(), ends, strict=True)
    ]
    return texts, [column.values[v] for v in documents.values[:, 0]]


def swapped_table(scores: dict, labels: list[str]) -> dict:
    """Bits/char of each rating's held-out reviews given each rating: rows given, columns own."""
    nats, characters = scores["log_likelihood"] * -1, np.array(scores["characters"])
    table = {}
    for k, given in enumerate(scores["values"]):
        row = {}
        for own in scores["values"]:
            mine = np.array([label == own for label in labels])
            if mine.any():
                row[own] = round(
                    float(nats[mine, k].sum() / math.log(2) / characters[mine].sum()), 4
                )
        table[given] = row
    return table


def baseline(train_texts, train_labels, texts, labels, samples: dict) -> dict:
    """TF-IDF + logistic regression on the same training reviews: 5-way and 4-5 vs 1-2."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score, roc_auc_score

    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2))
    features = vectorizer.fit_transform(train_texts)
    five = LogisticRegression(max_iter=2000).fit(features, train_labels)
    predicted = five.predict(vectorizer.transform(texts))
    polar = [label in POSITIVE + NEGATIVE for label in train_labels]
    two = LogisticRegression(max_iter=2000).fit(
        features[np.flatnonzero(polar)],
        [label in POSITIVE for label, keep in zip(train_labels, polar, strict=True) if keep],
    )
    held = [i for i, label in enumerate(labels) if label in POSITIVE + NEGATIVE]
    positive_p = two.predict_proba(vectorizer.transform([texts[i] for i in held]))[:, 1]
    called_positive = {
        value: float(np.mean(two.predict(vectorizer.transform(made))))
        for value, made in samples.items()
    }
    return {
        "accuracy": float(np.mean(predicted == np.array(labels))),
        "macro_f1": float(f1_score(labels, predicted, average="macro")),
        "auc": float(roc_auc_score([labels[i] in POSITIVE for i in held], positive_p)),
        "samples_called_positive": called_positive,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--score-only", action="store_true", help="score the runs trained before")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    table = DATA / "amazon_reviews_sample.csv"
    runs = {
        "conditioned": RUNS / f"reviews-conditioned-{args.steps}",
        "unconditioned": RUNS / f"reviews-plain-{args.steps}",
    }
    saved = RESULTS / f"conditions-{args.steps}.json"
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_at_start": os.getloadavg(),
        "steps": args.steps,
        "hidden": args.hidden,
    }
    if args.score_only:
        result = {**json.loads(saved.read_text()), "load_average_at_scoring": os.getloadavg()}
    else:
        result["wall_s"] = train_side_by_side(table, runs, args.steps, args.hidden)
        result["load_average_after_training"] = os.getloadavg()
    models = {name: lstmgen.load(run) for name, run in runs.items()}
    result["epochs"] = {name: lstmgen.info(run)["epochs"] for name, run in runs.items()}
    result["overall"] = {
        name: round(lstmgen.info(run)["best_val_bits_per_char"], 4) for name, run in runs.items()
    }
    result["per_rating"] = {
        name: {
            value: row["bits_per_char"] and round(row["bits_per_char"], 4)
            for value, row in models[name].evaluate_by_condition()["conditions"].items()
        }
        for name in ("conditioned",)
    }
    # the unconditioned run's documents all hold <other>: score them by the conditioned labels
    texts, labels = held_out_reviews(runs["conditioned"])
    with open(RUNS / "held-out-reviews.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)  # for `lstmgen classify` on the held-out reviews (the manual)
        writer.writerow(["Text", "Score"])
        writer.writerows(zip(texts, labels, strict=True))
    plain = models["unconditioned"].classify(texts)  # one value: its likelihood
    plain_nats, characters = -plain["log_likelihood"][:, 0], np.array(plain["characters"])
    result["per_rating"]["unconditioned"] = {
        value: round(float(plain_nats[mine].sum() / math.log(2) / characters[mine].sum()), 4)
        for value in models["conditioned"].conditions.columns[0].values
        if (mine := np.array([label == value for label in labels])).any()
    }
    started = time.perf_counter()
    scores = models["conditioned"].classify(texts)
    result["classify_reviews_per_minute"] = round(len(texts) / (time.perf_counter() - started) * 60)
    result["swapped"] = swapped_table(scores, labels)
    own = result["swapped"]
    result["conditioned_document_bits_per_char"] = {
        value: own[value].get(value) for value in scores["values"]
    }
    result["unconditioned_document_bits_per_char_all"] = round(
        float(plain_nats.sum() / math.log(2) / characters.sum()), 4
    )
    cond_nats = np.array(
        [
            -scores["log_likelihood"][i, scores["values"].index(label)]
            for i, label in enumerate(labels)
        ]
    )
    result["conditioned_document_bits_per_char_all"] = round(
        float(cond_nats.sum() / math.log(2) / characters.sum()), 4
    )
    result["classification"] = report(
        scores["values"], scores["posterior"], labels, positive=POSITIVE, negative=NEGATIVE
    )
    result["classification"]["auc"] = two_group_auc(
        scores["values"], scores["posterior"], labels, POSITIVE, NEGATIVE
    )
    samples = {
        value: models["conditioned"].generate(
            condition={"Score": value},
            length=400,
            seed=1,
            temperature=0.7,
            stop=["\n\n"],
            num_samples=args.samples,
        )
        for value in ("1", "2", "3", "4", "5")
    }
    result["samples"] = {value: made[:3] for value, made in samples.items()}
    train_texts, train_labels = _documents(runs["conditioned"], "train")
    result["tfidf_baseline"] = baseline(train_texts, train_labels, texts, labels, samples)
    result["load_average_at_end"] = os.getloadavg()
    saved.write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"conditions-{args.steps}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    with_, without = (result["per_rating"][k] for k in ("conditioned", "unconditioned"))
    lines = [
        f"{result['steps']:,} steps each, 2×{result['hidden']}; load average "
        f"{result['load_average_at_start']} at start, {result['load_average_at_end']} at end.",
        "",
        "| Score | conditioned bits/char | unconditioned bits/char |",
        "|---|---:|---:|",
    ]
    for value, bits in with_.items():
        lines.append(f"| {value} | {bits} | {without.get(value)} |")
    overall = result["overall"]
    lines.append(f"| all (best held-out) | {overall['conditioned']} | {overall['unconditioned']} |")
    swaps = result["swapped"]
    own = list(next(iter(swaps.values())))
    lines += [
        "",
        "Swapped (rows: the rating given; columns: the review's own; bits/char):",
        "",
        "| given \\ own | " + " | ".join(own) + " |",
        "|---|" + "---:|" * len(own),
    ]
    for given, row in swaps.items():
        lines.append(f"| {given} | " + " | ".join(f"{row.get(v, '')}" for v in own) + " |")
    c, b = result["classification"], result["tfidf_baseline"]
    lines += [
        "",
        "| classifier | 5-way accuracy | macro-F1 | 4-5 vs 1-2 AUC |",
        "|---|---:|---:|---:|",
        f"| lstmgen (Bayes' rule) | {c['accuracy']:.3f} | {c['macro_f1']:.3f} | {c['auc']:.3f} |",
        f"| TF-IDF + logistic regression | {b['accuracy']:.3f} | {b['macro_f1']:.3f} | "
        f"{b['auc']:.3f} |",
        "",
        f"classify: {result['classify_reviews_per_minute']:,} reviews a minute.",
        "",
        "Samples called positive by the TF-IDF baseline, per rating asked for: "
        + ", ".join(f"{v}: {p:.0%}" for v, p in b["samples_called_positive"].items()),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
