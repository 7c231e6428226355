"""Held-out loss against seconds of training, one line per benchmark run, as a PNG.

    python benchmarks/plot_curves.py benchmarks/results/*-600s.json \\
        --out benchmarks/results/curve.png

Reads the JSON files benchmarks/quality_vs_time.py writes (their "curve": [[seconds,
nats/char], ...]). Needs matplotlib (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def plot(results: list[dict], out: Path, title: str = "held-out loss vs. training time") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for result in results:
        seconds, nats = zip(*result["curve"], strict=True)
        ax.plot(
            seconds,
            nats,
            marker="o",
            markersize=3,
            label=f"{result['name']} ({result['parameters'] / 1e6:.2f}M)",
        )
    ax.set_xlabel("seconds of training (evaluation included)")
    ax.set_ylabel("held-out nats/char")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/curve.png"))
    parser.add_argument("--title", default="held-out loss vs. training time")
    args = parser.parse_args()
    results = [json.loads(path.read_text()) for path in args.results]
    print(plot(results, args.out, args.title))


if __name__ == "__main__":
    main()
