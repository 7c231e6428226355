"""`lstmgen serve` under load, against the offline rates of the same model in the same run.

    lstmgen train python-docs --out /tmp/serve-bench --hidden 256 --layers 2 --max-time 60s
    python benchmarks/serve_load.py /tmp/serve-bench                 # quiet machine
    python benchmarks/serve_load.py /tmp/serve-bench --busy          # beside one busy process
    python benchmarks/serve_load.py /tmp/serve-bench --long-prompt   # a 4,000-char prompt
    python benchmarks/serve_load.py /tmp/serve-bench --precision int8 # server and offline in int8

Three processes: the server (`lstmgen serve`), the clients (this script again, `--client`:
httpx, one asyncio task per client, streaming) and this one, which measures the offline rates
first (`Model.generate`: 1 stream, and 64 samples as one batch) and then only waits. For each
client count (1, 16, 64): completions, errors, chars/s, × offline (1 stream for 1 client, the
64-sample batch otherwise), p50/p99 latency, p50/p99 time to first token, the share of a core
the client process and the server took, and the server's event-loop time per batch step (from
its /metrics). `--busy` runs `python -c 'while True: pass'` beside everything, offline rates
included. `--long-prompt` runs 16 streams, then sends one 4,000-character prompt while they run,
and reports their longest stall (the longest gap between two events of one stream) while it
was primed, against the same 16 streams without it. Load average at start and end in each
result. Results: benchmarks/results/issue23/serve_load[-busy][-long].json and .md (--out).
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

OUT = Path(__file__).resolve().parent / "results" / "issue23"
BUSY = "while True: pass"
LONG_STREAM_TOKENS = 2000  # --long-prompt: the 16 streams run for seconds
LONG_PROMPT = (
    "The quick brown fox jumps over the lazy dog, and the module returns a list of the "
    "values it has read from the file. "
) * 40


# ----- the client process ---------------------------------------------------------------------
async def stream_one(http: httpx.AsyncClient, body: dict) -> dict:
    """One streamed completion: its chars, latency, first-token time and longest gap."""
    start = time.perf_counter()
    first, chars, last, gap = None, 0, start, 0.0
    async with http.stream("POST", "/v1/completions", json=body) as reply:
        if reply.status_code != 200:
            await reply.aread()
            return {"error": reply.status_code}
        async for line in reply.aiter_lines():
            if not line.startswith("data: {"):
                continue
            now = time.perf_counter()
            for choice in json.loads(line[6:])["choices"]:
                if choice["text"] and first is None:
                    first = now - start
                chars += len(choice["text"])
            if first is not None:
                gap = max(gap, now - last)
            last = now
    latency = time.perf_counter() - start
    return {"chars": chars, "latency": latency, "first": first or latency, "gap": gap}


async def clients_load(url: str, clients: int, completions: int, tokens: int) -> dict:
    """`completions` streamed completions shared among `clients` concurrent clients."""
    left = iter(range(completions))
    done: list[dict] = []
    errors = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in left:
            body = {"prompt": "The ", "max_tokens": tokens, "stream": True, "seed": i}
            try:
                result = await stream_one(http, body)
            except httpx.HTTPError:
                result = {"error": "http"}
            if "error" in result:
                errors += 1
            else:
                done.append(result)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - start
    return {
        "clients": clients,
        "completions": completions,
        "errors": errors,
        "seconds": seconds,
        "chars": sum(r["chars"] for r in done),
        "latencies": [r["latency"] for r in done],
        "first_tokens": [r["first"] for r in done],
    }


async def long_prompt_load(url: str, streams: int, tokens: int, with_prompt: bool) -> dict:
    """`streams` streams of `tokens` tokens; with_prompt: one 4,000-character prompt arrives
    once they all run. Their longest gaps, and how long the long prompt took to its first text."""
    limits = httpx.Limits(max_connections=streams + 1)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        bodies = [
            {"prompt": "The ", "max_tokens": tokens, "stream": True, "seed": i}
            for i in range(streams)
        ]
        running = [asyncio.create_task(stream_one(http, body)) for body in bodies]
        await asyncio.sleep(0.5)  # all streaming by now, for seconds yet
        long = None
        if with_prompt:
            body = {"prompt": LONG_PROMPT[:4000], "max_tokens": 20, "stream": True, "seed": 99}
            long = await stream_one(http, body)
        results = await asyncio.gather(*running)
    errors = sum("error" in r for r in results) + (long is not None and "error" in long)
    return {
        "streams": streams,
        "long_prompt_chars": 4000 if with_prompt else 0,
        "errors": errors,
        "longest_stall_s": max(r.get("gap", 0.0) for r in results),
        "long_prompt_first_token_s": None if long is None else long.get("first"),
    }


def summary(raw: dict) -> dict:
    """A load's figures: chars/s, p50/p99 latency and first token (raw: clients_load's)."""
    latencies, first = raw["latencies"], raw["first_tokens"]
    rest = {k: v for k, v in raw.items() if k not in ("latencies", "first_tokens", "chars")}
    return {
        **rest,
        "seconds": round(raw["seconds"], 2),
        "chars_per_s": round(raw["chars"] / raw["seconds"]),
        "latency_p50_s": round(quantile(latencies, 50), 3) if latencies else None,
        "latency_p99_s": round(quantile(latencies, 99), 3) if latencies else None,
        "first_token_p50_s": round(quantile(first, 50), 4) if first else None,
        "first_token_p99_s": round(quantile(first, 99), 4) if first else None,
    }


async def load(url: str, clients: int, completions: int, tokens: int) -> dict:
    """One load run from this process (benchmarks/gpu_check.py's serve part): its summary."""
    return summary(await clients_load(url, clients, completions, tokens))


def client_main(args: argparse.Namespace) -> None:
    """The client process: run one load, print its results and this process's CPU seconds."""
    started_cpu = time.process_time()
    if args.long_prompt:
        result = asyncio.run(
            long_prompt_load(args.client, args.streams, args.max_tokens, args.with_prompt)
        )
    else:
        result = asyncio.run(
            clients_load(args.client, int(args.clients), args.completions, args.max_tokens)
        )
    result["client_cpu_s"] = time.process_time() - started_cpu
    print(json.dumps(result), flush=True)


# ----- the benchmark process ------------------------------------------------------------------
def offline_rates(run: Path, tokens: int, precision: str = "auto") -> dict:
    """Characters per second of Model.generate: one stream, and 64 samples as one batch."""
    import lstmgen

    model = lstmgen.load(run, precision=precision)
    rates = {}
    for streams, length in ((1, tokens * 10), (64, tokens)):
        model.generate("The ", length=20, num_samples=streams, seed=0)  # warm up
        start = time.perf_counter()
        texts = model.generate("The ", length=length, num_samples=streams, seed=1)
        seconds = time.perf_counter() - start
        chars = sum(map(len, texts)) if streams > 1 else len(texts)
        rates[streams] = chars / seconds
    return rates


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc), or NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def server_metrics(url: str) -> dict[str, float]:
    """The server's event-loop seconds and batch steps so far (from /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    totals = {"lstmgen_event_loop_seconds_total": 0.0, "lstmgen_batch_steps_total": 0.0}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return totals


def run_clients(url: str, server_pid: int, extra: list[str]) -> dict:
    """Run the client process with these arguments; its result, the server's CPU seconds and
    event-loop time per step over the same time."""
    before, server_before = server_metrics(url), cpu_seconds(server_pid)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--client", url, *extra],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.setdefault("seconds", wall)
    after = server_metrics(url)
    steps = after["lstmgen_batch_steps_total"] - before["lstmgen_batch_steps_total"]
    loop_s = after["lstmgen_event_loop_seconds_total"] - before["lstmgen_event_loop_seconds_total"]
    result["server_core_share"] = round((cpu_seconds(server_pid) - server_before) / wall, 2)
    # over the load itself (the client process's imports excluded) where it was timed
    result["client_core_share"] = round(result.pop("client_cpu_s") / result["seconds"], 2)
    result["event_loop_us_per_step"] = round(loop_s / steps * 1e6, 1) if steps else None
    return result


def quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, nargs="?")
    parser.add_argument("--completions", type=int, default=1000, help="per client count")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--busy", action="store_true", help="beside one busy process")
    parser.add_argument("--long-prompt", action="store_true", help="the 4,000-char prompt test")
    parser.add_argument("--streams", type=int, default=16, help="--long-prompt: streams running")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--precision", default="auto", help="the server's and offline's")
    parser.add_argument("--client", help=argparse.SUPPRESS)  # the client process: server URL
    parser.add_argument("--with-prompt", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return
    if args.run is None:
        parser.error("name the run directory to serve")
    import lstmgen

    load_at_start = os.getloadavg()
    busy = subprocess.Popen([sys.executable, "-c", BUSY]) if args.busy else None
    try:
        offline = offline_rates(args.run, args.max_tokens, args.precision)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen(
            [sys.executable, "-m", "lstmgen", "serve", str(args.run), "--port", str(port)]
            + ["--max-tokens", str(max(args.max_tokens, LONG_STREAM_TOKENS)), "--max-batch", "64"]
            + ["--precision", args.precision],
            stderr=subprocess.PIPE,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        drain = None
        try:
            while "page:" not in server.stderr.readline():
                pass
            # the server logs a line per request: drained, so that its pipe never fills
            drain = subprocess.Popen(["cat"], stdin=server.stderr, stdout=subprocess.DEVNULL)
            rows = measure(args, url, server.pid, offline)
        finally:
            server.terminate()
            server.wait(60)
            if drain is not None:
                drain.wait(10)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    result = {
        "run": str(args.run),
        "model": lstmgen.info(args.run)["model"],
        "max_tokens": args.max_tokens,
        "busy": args.busy,
        "precision": args.precision,
        "offline_chars_per_s": {"1 stream": round(offline[1]), "64 samples": round(offline[64])},
        "rows": rows,
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "command": " ".join(["python", "benchmarks/serve_load.py", *sys.argv[1:]]),
    }
    name = "serve_load" + ("-busy" if args.busy else "") + ("-long" if args.long_prompt else "")
    name += "" if args.precision == "auto" else f"-{args.precision}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result, args.long_prompt)
    (args.out / f"{name}.md").write_text(table)
    print(table)


def measure(args: argparse.Namespace, url: str, server_pid: int, offline: dict) -> list[dict]:
    """The rows: one per client count, or the long-prompt pair."""
    rows = []
    if args.long_prompt:
        tokens = str(max(args.max_tokens, LONG_STREAM_TOKENS))  # they outlast the long prompt
        for with_prompt in (False, True):
            extra = ["--long-prompt", "--streams", str(args.streams), "--max-tokens", tokens]
            row = run_clients(url, server_pid, extra + (["--with-prompt"] if with_prompt else []))
            rows.append(row)
            print(json.dumps(row), flush=True)
        return rows
    for clients in map(int, args.clients.split(",")):
        extra = ["--clients", str(clients), "--completions", str(args.completions)]
        raw = run_clients(url, server_pid, extra + ["--max-tokens", str(args.max_tokens)])
        offline_rate = offline[1] if clients == 1 else offline[64]
        row = summary(raw)
        row["ratio_to_offline"] = round(raw["chars"] / raw["seconds"] / offline_rate, 2)
        row["offline"] = "1 stream" if clients == 1 else "64 samples as one batch"
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def markdown(result: dict, long_prompt: bool) -> str:
    """The result as the table BENCHMARKS.md shows."""
    offline = result["offline_chars_per_s"]
    start, end = result["load_average_at_start"][0], result["load_average_at_end"][0]
    lines = [
        f"offline: {offline['1 stream']:,} chars/s (1 stream), {offline['64 samples']:,} chars/s "
        f"(64 samples){'; beside one busy process' if result['busy'] else ''}; load average "
        f"{start:.2f} at start, {end:.2f} at end",
        "",
    ]
    if long_prompt:
        lines += [
            "| streams | long prompt | errors | longest stall | long prompt's first token | "
            "client / server core | event loop µs/step |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in result["rows"]:
            first = r["long_prompt_first_token_s"]
            lines.append(
                f"| {r['streams']} | {r['long_prompt_chars']:,} chars | {r['errors']} | "
                f"{r['longest_stall_s'] * 1000:.1f} ms | "
                f"{'-' if first is None else f'{first:.3f} s'} | "
                f"{r['client_core_share']} / {r['server_core_share']} | "
                f"{r['event_loop_us_per_step']} |"
            )
        return "\n".join(lines) + "\n"
    lines += [
        "| clients | completions | errors | chars/s | × offline | p50 / p99 latency | "
        "p50 / p99 first token | client / server core | event loop µs/step |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['clients']} | {r['completions']} | {r['errors']} | {r['chars_per_s']:,} | "
            f"{r['ratio_to_offline']} ({r['offline']}) | {r['latency_p50_s']} / "
            f"{r['latency_p99_s']} s | {r['first_token_p50_s']} / {r['first_token_p99_s']} s | "
            f"{r['client_core_share']} / {r['server_core_share']} | "
            f"{r['event_loop_us_per_step']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
