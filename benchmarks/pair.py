"""Two code trees side by side on one core each: this tree against another (main before a round,
checked out with `git worktree add /tmp/base COMMIT`), the same benchmarks/quality_vs_time.py
run for both at once, each pinned to its own core with taskset and trained on one thread.

    python benchmarks/pair.py --base /tmp/base --corpus ../shared/data/tinyshakespeare.txt \\
        --budget 600 --name ts-600 [--seed 2] [--set average=0] [--base-set ...]

Each side imports lstmgen from its own tree's src/ (PYTHONPATH), so the venv is shared. The load
average is recorded at the start and the end; the two result JSON files (benchmarks/out/) and
a summary (what each side's held-out nats/char was at the end, the difference) go to --results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def side(tree: Path, core: int, args, name: str, sets: list[str]) -> subprocess.Popen:
    command = [sys.executable, str(HERE / "benchmarks" / "quality_vs_time.py"), args.corpus]
    command += ["--budget", str(args.budget), "--name", name, "--set", "threads=1"]
    command += ["--set", f"seed={args.seed}"]
    for item in sets:
        command += ["--set", item]
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(core), *command]
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": "1"}
    log = open(HERE / "benchmarks" / "out" / f"{name}.log", "w")  # noqa: SIM115 - kept open
    return subprocess.Popen(command, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT)


def copied(run: Path, length: int, seed: int) -> dict:
    """A sample of `length` characters at temperature 0.8 from the run's best weights, and the
    share of its 50-character windows that stand in the training split (brute force: every
    50-character string of the training text in a set), and its longest copy."""
    import lstmgen
    from lstmgen.data.store import TokenStore
    from lstmgen.tokens import load_tokenizer

    train = load_tokenizer(run / "tokenizer.json").decode(TokenStore.open(run / "data").train)
    sample = lstmgen.load(run).generate("", length=length, temperature=0.8, seed=seed)
    grams = {train[i : i + 50] for i in range(len(train) - 49)}
    windows = [sample[i : i + 50] for i in range(len(sample) - 49)]
    longest, start = 0, 0  # the longest span of the sample that stands in the training text
    for end in range(1, len(sample) + 1):
        while start < end and sample[start:end] not in train:
            start += 1
        longest = max(longest, end - start)
    share = sum(w in grams for w in windows) / max(len(windows), 1)
    return {"characters": len(sample), "copied_50": share, "longest_copy": longest}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", type=Path, required=True, help="the other tree (a worktree)")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--budget", type=float, default=600)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--name", required=True)
    parser.add_argument("--set", action="append", default=[], help="this tree's overrides")
    parser.add_argument("--base-set", action="append", default=[], help="the base's overrides")
    parser.add_argument("--results", type=Path, default=HERE / "benchmarks/results/issue32")
    parser.add_argument(
        "--copy-sample", type=int, default=0, help="characters of a T=0.8 sample to check"
    )
    args = parser.parse_args()
    (HERE / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    names = {"this": f"{args.name}-this-core0", "base": f"{args.name}-base-core1"}
    load_start = os.getloadavg()
    running = [
        side(HERE, 0, args, names["this"], args.set),
        side(args.base.resolve(), 1, args, names["base"], args.base_set),
    ]
    codes = [p.wait() for p in running]
    load_end = os.getloadavg()
    if any(codes):
        sys.exit(f"a side failed ({codes}); see benchmarks/out/{args.name}-*.log")
    summary = {"name": args.name, "corpus": args.corpus, "budget_s": args.budget}
    summary |= {"seed": args.seed, "this_set": args.set, "base_set": args.base_set}
    summary |= {"base": str(args.base), "load_average_start": load_start}
    summary["load_average_end"] = load_end
    for key, name in names.items():
        result = json.loads((HERE / "benchmarks" / "out" / f"{name}.json").read_text())
        shutil.copyfile(HERE / "benchmarks" / "out" / f"{name}.json", args.results / f"{name}.json")
        keys = ("final_val_nats", "best_val_nats", "tokens_per_s", "epochs", "parameters")
        summary[key] = {k: result.get(k) for k in keys}
        summary[key]["model"] = result.get("model")
        if args.copy_sample:  # both runs read with this tree's code (the formats agree)
            run = HERE / "benchmarks" / "out" / "runs" / name
            summary[key]["sample"] = copied(run, args.copy_sample, args.seed)
    this, base = summary["this"]["final_val_nats"], summary["base"]["final_val_nats"]
    summary["this_minus_base_final_nats"] = this - base
    (args.results / f"{args.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
