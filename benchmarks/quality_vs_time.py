"""Held-out loss over wall-clock time for lstmgen's default settings (or overrides).

    python benchmarks/quality_vs_time.py ../shared/data/tinyshakespeare.txt --budget 600
    python benchmarks/quality_vs_time.py CORPUS --budget 300 --set hidden=384 --set layers=2

Trains with lstmgen.train (the real trainer, held-out = last 10 %; of a Project
Gutenberg file only the book between its START and END lines is used), evaluating the
whole held-out split every --eval-every, and prints a table of held-out nats/char
at 60, 120, 300 and 600 s (the last evaluation at or before each time; evaluation
time counts against the budget) plus training tokens/s (training tokens ÷ the trainer's
time less its evaluations) and FLOP utilisation
(training FLOP/s of the real trainer ÷ a same-machine fp32 1024² matmul measured
in the same run, before and after training, the higher of the two). --markdown
appends the table to a file; results go to benchmarks/out/<name>.json and, with
matplotlib installed, the curve to benchmarks/out/<name>.png (benchmarks/plot_curves.py
draws several runs).
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
from lstmgen.training.trainer import Trainer

CHECKPOINTS_S = (60, 120, 300, 600)
GUTENBERG = re.compile(
    r"^\s*\*\*\* (START|END) OF (THE|THIS) PROJECT GUTENBERG EBOOK.*$", re.MULTILINE
)


def book_text(corpus: str, out_dir: Path) -> str:
    """The corpus itself, or for a Project Gutenberg file only the book between its START and END
    lines (else the held-out tail would be the licence text), written beside the outputs."""
    text = Path(corpus).read_text(encoding="utf-8")
    marks = list(GUTENBERG.finditer(text))
    if len(marks) < 2 or marks[0].group(1) != "START" or marks[-1].group(1) != "END":
        return corpus
    book = out_dir / f"{Path(corpus).stem}-book.txt"
    out_dir.mkdir(parents=True, exist_ok=True)
    book.write_text(text[marks[0].end() : marks[-1].start()].strip() + "\n", encoding="utf-8")
    print(f"{corpus}: Project Gutenberg file, training and holding out the book text only ({book})")
    return str(book)


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def matmul_flops_per_s(n: int = 1024, seconds: float = 2.0) -> float:
    """fp32 FLOP/s of a same-machine n×n matrix multiply (the denominator of FLOP utilisation;
    measured before and after training, the higher one counts: this shared machine is noisy)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - start)


def training_flops_per_token(model: dict, vocab: int) -> float:
    """Forward-pass multiply-adds per token × 2 FLOPs × 3 (forward + backward ≈ 3 forwards)."""
    gates = 4 if model["cell"] == "lstm" else 3
    macs = sum(
        gates
        * model["hidden"]
        * ((model["embedding"] if layer == 0 else model["hidden"]) + model["hidden"])
        for layer in range(model["layers"])
    )
    macs += model["hidden"] * vocab  # the output layer (the embedding lookup costs no multiplies)
    return 6.0 * macs


class EvaluationClock:
    """Times every held-out evaluation of the run (Trainer.evaluate, its save of best/
    included), with the trainer's own elapsed_s when it began, so that evaluation time can be
    taken out of the trainer's clock."""

    def __init__(self) -> None:
        self.evaluations: list[tuple[float, float]] = []  # (trainer elapsed_s at start, seconds)

    def __enter__(self) -> EvaluationClock:
        original = self.original = Trainer.evaluate
        evaluations = self.evaluations

        def timed(trainer: Trainer) -> float:
            begun, start = trainer.progress.elapsed_s, time.perf_counter()
            try:
                return original(trainer)
            finally:
                evaluations.append((begun, time.perf_counter() - start))

        Trainer.evaluate = timed
        return self

    def __exit__(self, *exc) -> None:
        Trainer.evaluate = self.original

    def seconds_within(self, elapsed_s: float) -> float:
        """Evaluation seconds inside the trainer's clock (elapsed_s): the evaluation made after
        the last step of a run that ends mid-epoch is not on that clock."""
        return sum(d for begun, d in self.evaluations if begun < elapsed_s)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("corpus")
    parser.add_argument(
        "--budget", type=float, default=600, help="seconds of training (wall clock)"
    )
    parser.add_argument("--eval-every", default="60s")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="override a default"
    )
    parser.add_argument("--name", default=None, help="label of this run in the outputs")
    parser.add_argument("--markdown", type=Path, default=None, help="append the table to this file")
    args = parser.parse_args()

    overrides = {
        k.replace("-", "_"): parse_value(v) for k, v in (s.split("=", 1) for s in args.set)
    }
    # the machine's reference, measured in this run before training
    matmul_flops = matmul_flops_per_s()
    name = args.name or (
        Path(args.corpus).stem
        + "".join(f"-{k}{v}" for k, v in overrides.items())
        + f"-{int(args.budget)}s"
    )
    out_dir = Path("benchmarks/out")
    run_dir = out_dir / "runs" / name
    started = time.perf_counter()
    corpus = book_text(args.corpus, out_dir)
    with EvaluationClock() as evaluations:
        result = lstmgen.train(
            [corpus],
            out=run_dir,
            overwrite=True,
            quiet=True,
            max_time=f"{args.budget}s",
            eval_every=args.eval_every,
            **overrides,
        )
    wall = time.perf_counter() - started
    matmul_flops = max(matmul_flops, matmul_flops_per_s())
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    info = lstmgen.info(run_dir)

    def at(seconds: float):
        seen = [m["val_loss"] for m in metrics if m["elapsed_s"] <= seconds + 1.0]
        return min(seen) if seen else None

    points = {t: at(t) for t in CHECKPOINTS_S if t <= args.budget + 1}
    # Overall rate: training tokens over the trainer's clock (evaluations included).
    tokens_per_s = result.tokens / result.elapsed_s
    # Training throughput without the evaluations: all training tokens seen ÷ the trainer's
    # elapsed_s less the time spent in its held-out evaluations (timed above; checkpoint saves
    # at epoch ends stay in). Not the progress bar's 1-s window rates: their mean can come out
    # below the overall rate.
    eval_s = evaluations.seconds_within(result.elapsed_s)
    train_s = result.elapsed_s - eval_s
    train_tokens_per_s = result.tokens / train_s if train_s > 0 else tokens_per_s
    flops_per_token = training_flops_per_token(info["model"], info["vocab_size"])
    summary = {
        "name": name,
        "corpus": args.corpus,
        "budget_s": args.budget,
        "overrides": overrides,
        "model": info["model"],
        "train": {
            k: info["train"][k]
            for k in ("batch_size", "seq_len", "lr", "weight_decay", "warmup_steps", "grad_clip")
        },
        "parameters": info["parameters"],
        # --max-time chose the size
        "sizing": json.loads((run_dir / "config.json").read_text()).get("sizing"),
        "val_nats_at": points,
        "final_val_nats": metrics[-1]["val_loss"],
        "best_val_nats": min(m["val_loss"] for m in metrics),
        "tokens": result.tokens,
        "tokens_per_s": tokens_per_s,
        "train_tokens_per_s": train_tokens_per_s,
        "elapsed_s": result.elapsed_s,
        "eval_s": eval_s,
        "train_s": train_s,
        "training_flops_per_token": flops_per_token,
        "training_flops_per_s": flops_per_token * train_tokens_per_s,
        "matmul_flops_per_s": matmul_flops,
        "flop_utilisation": flops_per_token * train_tokens_per_s / matmul_flops,
        "epochs": result.epochs,
        "curve": [(m["elapsed_s"], m["val_loss"]) for m in metrics],
        "wall_s": wall,
        "machine": f"{platform.machine()} {platform.processor() or ''} "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(summary, indent=2))
    try:
        from plot_curves import plot

        print("curve:", plot([summary], out_dir / f"{name}.png"))
    except ImportError:
        print("(no PNG: pip install -e '.[bench]' for matplotlib)")
    m = info["model"]
    header = (
        "| run | model | params | "
        + " | ".join(f"{t} s" for t in points)
        + " | best | tokens/s | epochs | FLOP utilisation |"
    )
    row = (
        f"| {name} | {m['layers']}×{m['hidden']} emb {m['embedding']} drop {m['dropout']}, "
        f"B {info['train']['batch_size']} T {info['train']['seq_len']} lr {info['train']['lr']} | "
        f"{info['parameters'] / 1e6:.2f}M | "
        + " | ".join("—" if v is None else f"{v:.4f}" for v in points.values())
        + f" | {summary['best_val_nats']:.4f} | {tokens_per_s:,.0f} | {result.epochs:.2f} | "
        f"{summary['flop_utilisation']:.2f} |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    print(row)
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write(row + "\n")


if __name__ == "__main__":
    main()
