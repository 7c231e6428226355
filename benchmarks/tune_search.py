"""Does `lstmgen tune` beat the defaults on a corpus they were not tuned on? (issue 15)

    python benchmarks/tune_search.py ../shared/data/nietzsche.txt --name nietzsche
    python benchmarks/tune_search.py ../shared/data/amazon_reviews_sample.csv --name reviews \\
        --column Text

Stage `search`: `lstmgen tune` with --trial-time (60 s) until --search (1 h) is spent.
Stage `compare`: the winner (`--config best.json`) and the defaults each trained once more
for --trial-time and scored on the same held-out split. `all` does both. Each command runs
as its own process, with --threads (1 by default, so two searches can share a 2-core machine
and every trial sees the same compute). Results: benchmarks/results/issue15/NAME.json / .txt.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LSTMGEN = [sys.executable, "-m", "lstmgen"]


def run(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([*LSTMGEN, *map(str, args)], check=True)
    return time.perf_counter() - started


def info(run_dir: Path) -> dict:
    done = subprocess.run(
        [*LSTMGEN, "info", str(run_dir), "--json"], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus")
    parser.add_argument("--name", required=True)
    parser.add_argument("--column", help="the text column of a table")
    parser.add_argument("--search", default="1h")
    parser.add_argument("--trial-time", default="60s")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--train-seeds", default="1337", help="seeds of the retraining, comma-separated"
    )
    parser.add_argument("--stage", choices=["search", "compare", "all"], default="all")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()

    folder = args.out / f"tune-{args.name}"
    tune_dir = folder / "tune"
    data = ["--column", args.column] if args.column else []
    threads = ["--threads", args.threads]
    results_dir = HERE / "results" / "issue15"
    results_dir.mkdir(parents=True, exist_ok=True)
    result_path = results_dir / f"{args.name}.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    result.update(corpus=args.corpus, name=args.name, threads=args.threads)

    if args.stage in ("search", "all"):
        result["search"] = {"load_at_start": os.getloadavg(), "budget": args.search}
        seconds = run(
            ["tune", args.corpus, *data, "--out", tune_dir, "--trial-time", args.trial_time]
            + ["--timeout", args.search, "--seed", args.seed, *threads, "-q"]
        )
        result["search"]["wall_s"] = round(seconds, 1)
        result["search"].update(summarise(tune_dir))
    if args.stage in ("compare", "all"):
        result["compare"] = {"load_at_start": os.getloadavg(), "time": args.trial_time}
        best = tune_dir / "best.json"
        for seed in args.train_seeds.split(","):
            for label, extra in (("defaults", []), ("winner", ["--config", best])):
                run_dir = folder / f"{label}-{seed}"
                run(
                    ["train", args.corpus, *data, "--out", run_dir, "--max-time", args.trial_time]
                    + [*extra, "--seed", seed, *threads, "--overwrite", "-q"]
                )
                facts = info(run_dir)
                result["compare"].setdefault(label, []).append(
                    {
                        "seed": int(seed),
                        "final_bpc": facts["last_val_bits_per_char"],
                        "best_bpc": facts["best_val_bits_per_char"],
                        "model": {k: facts["model"][k] for k in ("hidden", "layers", "embedding")},
                        "steps": facts["steps"],
                        "tokens_seen": facts["tokens_seen"],
                    }
                )
        result["compare"]["load_at_end"] = os.getloadavg()
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    (results_dir / f"{args.name}.txt").write_text(table(result))
    print(table(result))


def summarise(tune_dir: Path) -> dict:
    import optuna

    study = optuna.load_study(study_name="lstmgen", storage=f"sqlite:///{tune_dir / 'study.db'}")
    states = [t.state.name for t in study.trials]
    first = study.trials[0]
    best = study.best_trial
    return {
        "trials": len(states),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "failed": states.count("FAIL"),
        "defaults_trial_bpc": first.value,
        "best_trial": best.number,
        "best_trial_bpc": best.value,
        "best_params": best.params,
        "top5": [
            {"trial": t.number, "bpc": t.value, "params": t.params}
            for t in sorted(
                (t for t in study.trials if t.value is not None), key=lambda t: t.value
            )[:5]
        ],
    }


def table(result: dict) -> str:
    lines = [f"# {result['name']} ({result['corpus']}), {result['threads']} thread(s)"]
    search = result.get("search")
    if search:
        lines += [
            f"search: {search['trials']} trials in {search['wall_s']:.0f} s "
            f"({search['complete']} complete, {search['pruned']} pruned, {search['failed']} "
            f"failed), load at start {search['load_at_start'][0]:.2f}",
            f"defaults as trial 0: {search['defaults_trial_bpc']:.4f} bits/char; best: trial "
            f"{search['best_trial']}, {search['best_trial_bpc']:.4f}: {search['best_params']}",
        ]
    compare = result.get("compare")
    if compare:
        lines.append(
            f"retrained for {compare['time']} each (load {compare['load_at_start'][0]:.2f}):"
        )
        lines.append("| run | seed | model | final held-out bpc | best held-out bpc | steps |")
        lines.append("|---|---:|---|---:|---:|---:|")
        for label in ("defaults", "winner"):
            for row in compare.get(label, []):
                m = row["model"]
                lines.append(
                    f"| {label} | {row['seed']} | {m['layers']}×{m['hidden']}, emb "
                    f"{m['embedding']} | {row['final_bpc']:.4f} | {row['best_bpc']:.4f} | "
                    f"{row['steps']:,} |"
                )
        for label in ("defaults", "winner"):
            finals = [row["final_bpc"] for row in compare.get(label, [])]
            if finals:
                lines.append(
                    f"{label}: mean final {sum(finals) / len(finals):.4f} over {len(finals)}"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
