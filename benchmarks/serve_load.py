"""`lstmgen serve` under load: completions from 1, 16 and 64 concurrent streaming clients.

    lstmgen train python-docs --out /tmp/serve-bench --hidden 256 --layers 2 --max-time 60s
    python benchmarks/serve_load.py /tmp/serve-bench

On loopback, the server in its own process (`lstmgen serve`), the clients here (httpx, one
asyncio task each, streaming). For each client count: errors (must be 0), aggregate chars/s,
p50/p99 latency and time to first token; beside them, measured in the same run, the offline
rates of the same model (`Model.generate` of 1 stream and of 64 samples as one batch), and the
ratios. Writes benchmarks/results/issue13/serve_load.json and .txt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

import lstmgen

OUT = Path(__file__).resolve().parent / "results" / "issue13"


def offline_rates(run: Path, tokens: int) -> dict:
    """Characters per second of Model.generate: one stream, and 64 samples as one batch."""
    model = lstmgen.load(run)
    rates = {}
    for streams, length in ((1, tokens * 10), (64, tokens)):
        model.generate("The ", length=20, num_samples=streams, seed=0)  # warm up
        start = time.perf_counter()
        texts = model.generate("The ", length=length, num_samples=streams, seed=1)
        seconds = time.perf_counter() - start
        chars = sum(map(len, texts)) if streams > 1 else len(texts)
        rates[streams] = chars / seconds
    return rates


async def load(url: str, clients: int, completions: int, tokens: int) -> dict:
    """`completions` streamed completions shared among `clients` concurrent clients."""
    left = iter(range(completions))
    latencies, first_tokens, errors, chars = [], [], 0, 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, chars
        for i in left:
            body = {"prompt": "The ", "max_tokens": tokens, "stream": True, "seed": i}
            start, first, text = time.perf_counter(), None, 0
            try:
                async with http.stream("POST", "/v1/completions", json=body) as reply:
                    if reply.status_code != 200:
                        errors += 1
                        continue
                    async for line in reply.aiter_lines():
                        if not line.startswith("data: {"):
                            continue
                        for choice in json.loads(line[6:])["choices"]:
                            if choice["text"] and first is None:
                                first = time.perf_counter() - start
                            text += len(choice["text"])
            except httpx.HTTPError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)
            first_tokens.append(first or latencies[-1])
            chars += text

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - start

    def quantile(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]

    return {
        "clients": clients,
        "completions": completions,
        "errors": errors,
        "seconds": round(seconds, 2),
        "chars_per_s": round(chars / seconds),
        "latency_p50_s": round(quantile(latencies, 50), 3),
        "latency_p99_s": round(quantile(latencies, 99), 3),
        "first_token_p50_s": round(quantile(first_tokens, 50), 4),
        "first_token_p99_s": round(quantile(first_tokens, 99), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--completions", type=int, default=1000)
    parser.add_argument("--single-client-completions", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--clients", default="1,16,64")
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    offline = offline_rates(args.run, args.max_tokens)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "lstmgen", "serve", str(args.run), "--port", str(port)]
        + ["--max-tokens", str(args.max_tokens), "--max-batch", "64"],
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while "page:" not in server.stderr.readline():
            pass
        rows = []
        for clients in map(int, args.clients.split(",")):
            count = args.single_client_completions if clients == 1 else args.completions
            row = asyncio.run(load(url, clients, count, args.max_tokens))
            offline_rate = offline[1] if clients == 1 else offline[64]
            row["ratio_to_offline"] = round(row["chars_per_s"] / offline_rate, 2)
            row["offline"] = "1 stream" if clients == 1 else "64 samples as one batch"
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        server.terminate()
        server.wait(60)
    result = {
        "run": str(args.run),
        "model": lstmgen.info(args.run)["model"],
        "max_tokens": args.max_tokens,
        "offline_chars_per_s": {"1 stream": round(offline[1]), "64 samples": round(offline[64])},
        "rows": rows,
        "load_average_at_start": load_at_start,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "command": " ".join(["python", "benchmarks/serve_load.py", *sys.argv[1:]]),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "serve_load.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"offline: {offline[1]:,.0f} chars/s (1 stream), {offline[64]:,.0f} chars/s (64 samples); "
        f"load average at start {load_at_start[0]:.2f}",
        "| clients | completions | errors | chars/s | × offline | p50 / p99 latency | "
        "p50 / p99 first token |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['clients']} | {r['completions']} | {r['errors']} | {r['chars_per_s']:,} | "
            f"{r['ratio_to_offline']} ({r['offline']}) | {r['latency_p50_s']} / "
            f"{r['latency_p99_s']} s | {r['first_token_p50_s']} / {r['first_token_p99_s']} s |"
        )
    (OUT / "serve_load.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
