"""int8 inference against fp32 (and bf16 where the CPU has it), and this branch against today's
main, in one run (issue 30).

    git worktree add /tmp/main-97abcd0 97abcd0                 # today's main, once
    python benchmarks/int8_inference.py --main /tmp/main-97abcd0           # quiet machine
    python benchmarks/int8_inference.py --main /tmp/main-97abcd0 --quick   # seconds: the steps
    python benchmarks/int8_inference.py --main /tmp/main-97abcd0 --serve   # + serve_load.py

Three runs train on tiny-shakespeare for --time each (a 2x256 and a 3x512 char model, a 2x256
BPE model) and one on the reviews (2x256 char, conditioned on Score). For each run and each
precision, alone and beside one busy process (contention.py's Busy):

- generate: characters/s of `Model.generate` at 1, 16 and 64 streams (--length tokens each,
  temperature 0.8, seed 1; one untimed call first), --threads threads;
- held-out bits/char over the run's held-out split (up to --held-out predictions, 16 streams);
- for the reviews run: `classify` reviews per minute, accuracy and AUC (Score 1-2 against
  4-5) on --reviews reviews that follow the training ones, and `evaluate` characters/s;
- with --serve: benchmarks/serve_load.py on the 2x256 char run at 1, 16 and 64 clients per
  precision (the load generator in its own process; its core share is in the table).

Then the default `generate` (no --precision: auto) of this branch against --main's, each in its
own process (PYTHONPATH at each tree's src), at 1 and 64 streams on the 2x256 char run, in
turns, twice each. The load average is recorded at the start and the end. Writes
int8_inference.json and .md to benchmarks/results/issue30/ (--out). About 25 minutes
(--time 2m); --quick under a minute.
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from contention import Busy  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "results" / "issue30"
STREAMS = (1, 16, 64)
MODELS = {  # name: (corpus, train options)
    "char 2x256": ("tinyshakespeare.txt", ["--layers", "2", "--hidden", "256"]),
    "char 3x512": ("tinyshakespeare.txt", ["--layers", "3", "--hidden", "512"]),
    "bpe 2x256": ("tinyshakespeare.txt", ["--layers", "2", "--hidden", "256", "--level", "bpe"]),
    "reviews 2x256": (
        "amazon_reviews_sample.csv",
        ["--layers", "2", "--hidden", "256", "--column", "Text", "--condition-column", "Score"],
    ),
}
TIMED = """
import json, sys, time
import lstmgen
run, streams, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = lstmgen.load(run)
model.generate("The ", length=20, num_samples=streams, seed=0)
start = time.perf_counter()
texts = model.generate("The ", length=length, num_samples=streams, seed=1, temperature=0.8)
seconds = time.perf_counter() - start
texts = texts if isinstance(texts, list) else [texts]
print(json.dumps({"precision": getattr(model, "precision", "fp32 (main)"),
                  "chars_per_s": round(sum(map(len, texts)) / seconds)}))
"""


def train(work: Path, name: str, args) -> Path:
    corpus, options = MODELS[name]
    source = DATA / corpus
    limit = ["--max-time", args.time]
    if args.quick:  # small models, a few steps: only that every step runs
        options = [o if o not in ("256", "512") else "32" for o in options]
        limit = ["--max-steps", "10"]
    out = work / name.replace(" ", "-")
    command = [sys.executable, "-m", "lstmgen", "train", str(source), "--out", str(out), "-q"]
    subprocess.run(command + options + limit, check=True)
    return out


def generate_rates(model, length: int) -> dict:
    rates = {}
    for streams in STREAMS:
        model.generate("The ", length=20, num_samples=streams, seed=0)  # first-call costs
        start = time.perf_counter()
        texts = model.generate("The ", length=length, num_samples=streams, seed=1, temperature=0.8)
        seconds = time.perf_counter() - start
        texts = texts if isinstance(texts, list) else [texts]
        rates[streams] = round(sum(map(len, texts)) / seconds)
    return rates


def held_out(model, run: Path, limit: int) -> float:
    from lstmgen.config import RunConfig, bits_per_char
    from lstmgen.data.store import TokenStore
    from lstmgen.metrics import evaluate_tokens

    store = TokenStore.open(run / "data")
    documents = store.documents("val") if model.conditions is not None else None
    tokens = np.asarray(store.val, dtype=np.int64)
    nats, count = evaluate_tokens(model.module, tokens, limit=limit, documents=documents)
    return round(float(bits_per_char(nats / count, RunConfig.read(run).tokens_per_char)), 4)


def reviews(run: Path, precision: str, count: int) -> dict:
    """classify and evaluate on reviews from the end of the sample (the run trained on all of
    it; speed is what this measures, the quality figures compare the precisions)."""
    import lstmgen

    with tempfile.TemporaryDirectory() as folder:
        lines = (DATA / "amazon_reviews_sample.csv").read_text(encoding="utf-8").splitlines()
        sample = Path(folder) / "reviews.csv"
        sample.write_text("\n".join([lines[0], *lines[-count:]]) + "\n", encoding="utf-8")
        start = time.perf_counter()
        result = lstmgen.classify(
            run, [str(sample)], column="Text", condition_column="Score", precision=precision,
            positive=["4", "5"], negative=["1", "2"],
        )  # fmt: skip
        seconds = time.perf_counter() - start
    model = lstmgen.load(run, precision=precision)
    text = "\n".join(lines[-count:])[:20000]
    start = time.perf_counter()
    bits = model.evaluate(text)["bits_per_char"]
    evaluate_s = time.perf_counter() - start
    return {
        "reviews_per_minute": round(count / seconds * 60),
        "accuracy": result.get("accuracy"),
        "auc": result.get("auc"),
        "evaluate_chars_per_s": round(len(text) / evaluate_s),
        "evaluate_bits_per_char": round(bits, 4),
    }


def precisions() -> list[str]:
    from lstmgen.device import cpu_bf16_missing

    return ["fp32", "int8"] + ([] if cpu_bf16_missing() else ["bf16"])


def measure_runs(runs: dict, args) -> list[dict]:
    import lstmgen
    from lstmgen import threads

    threads.ask(args.threads)
    threads.use(args.threads)
    rows = []
    for load in ("alone", "beside one busy process"):
        busy = Busy().__enter__() if load != "alone" else None
        try:
            for name, run in runs.items():
                for precision in precisions():
                    model = lstmgen.load(run, precision=precision)
                    row = {"model": name, "precision": precision, "load": load}
                    row["chars_per_s"] = generate_rates(model, args.length)
                    row["held_out_bits_per_char"] = held_out(model, run, args.held_out)
                    if name.startswith("reviews"):
                        row.update(reviews(run, precision, args.reviews))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            if busy is not None:
                busy.__exit__()
    return rows


def main_against_branch(run: Path, main: Path, args) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("LSTMGEN_CPU_INT8",)}
    env["LSTMGEN_THREADS"] = str(args.threads)
    rows = []
    for streams in (1, 64):
        length = args.length * (10 if streams == 1 else 1)
        for _ in range(2):
            for side, tree in (("main 97abcd0", main), ("this branch", ROOT)):
                done = subprocess.run(
                    [sys.executable, "-c", TIMED, str(run), str(streams), str(length)],
                    env={**env, "PYTHONPATH": str(tree / "src")},
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                row = {"side": side, "streams": streams, **json.loads(done.stdout)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def serve(run: Path, args) -> list[dict]:
    rows = []
    for precision in ("fp32", "int8"):
        out = args.out / f"serve-{precision}"
        command = [sys.executable, str(ROOT / "benchmarks" / "serve_load.py"), str(run)]
        command += ["--precision", precision, "--out", str(out)]
        command += (
            ["--completions", "4", "--clients", "1,2"]
            if args.quick
            else ["--completions", str(args.serve_completions)]
        )
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        found = json.loads((out / f"serve_load-{precision}.json").read_text())
        rows.append({"precision": precision, **found})
    return rows


def markdown(result: dict) -> str:
    start, end = result["load_average_at_start"][0], result["load_average_at_end"][0]
    lines = [f"load average {start:.2f} at start, {end:.2f} at end", ""]
    lines += [
        "| model | precision | load | 1 stream | 16 | 64 chars/s | held-out bits/char | "
        "classify reviews/min | accuracy / AUC | evaluate chars/s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        rate = r["chars_per_s"]
        quality = f"{r['accuracy']} / {r['auc']}" if "accuracy" in r else "-"
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['load']} | {rate[1]:,} | {rate[16]:,} | "
            f"{rate[64]:,} | {r['held_out_bits_per_char']} | "
            f"{r.get('reviews_per_minute', '-')} | {quality} | "
            f"{r.get('evaluate_chars_per_s', '-')} |"
        )
    lines += ["", "| default generate | streams | precision | chars/s |", "|---|---:|---|---:|"]
    for r in result["main_against_branch"]:
        lines.append(f"| {r['side']} | {r['streams']} | {r['precision']} | {r['chars_per_s']:,} |")
    for r in result.get("serve", []):
        lines += ["", f"serve, {r['precision']}:", ""]
        lines += [
            f"- {row['clients']} clients: {row['chars_per_s']:,} chars/s, "
            f"{row['ratio_to_offline']}x offline, client / server core "
            f"{row['client_core_share']} / {row['server_core_share']}"
            for row in r["rows"]
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--main", type=Path, required=True, help="a worktree of main (97abcd0)")
    parser.add_argument("--time", default="2m", help="training time of each run")
    parser.add_argument("--length", type=int, default=400, help="tokens per stream")
    parser.add_argument("--held-out", type=int, default=65536, help="held-out predictions")
    parser.add_argument("--reviews", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--serve", action="store_true", help="also serve_load.py per precision")
    parser.add_argument("--quick", action="store_true", help="tiny runs: the steps only")
    parser.add_argument("--serve-completions", type=int, default=1000, help="per client count")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.length, args.held_out, args.reviews = 30, 2048, 40
    os.environ.pop("LSTMGEN_CPU_INT8", None)
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        runs = {name: train(Path(folder), name, args) for name in MODELS}
        result = {"rows": measure_runs(runs, args)}
        result["main_against_branch"] = main_against_branch(runs["char 2x256"], args.main, args)
        if args.serve:
            result["serve"] = serve(runs["char 2x256"], args)
    from lstmgen.device import cpu_flags

    result.update(
        load_average_at_start=load_at_start,
        load_average_at_end=os.getloadavg(),
        cpus=os.cpu_count(),
        int8_flags=sorted(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"}),
        machine=platform.platform(),
        processor=platform.processor(),
        command=" ".join(["python", "benchmarks/int8_inference.py", *sys.argv[1:]]),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    name = "int8_inference" + ("-quick" if args.quick else "")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
