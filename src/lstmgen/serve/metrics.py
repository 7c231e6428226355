"""What the server counts, for `GET /metrics` in the Prometheus text format (prometheus-client),
and one log line per API request (its status, tokens and seconds).

Each app has its own registry, so two apps in one process (tests) count apart. The batch
thread updates the batch's numbers once per hand-over to the event loop (every ~10 ms), not
per step; the event loop's own work on each hand-over is timed, so its cost per step can be
read as lstmgen_event_loop_seconds_total / lstmgen_batch_steps_total.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from lstmgen.errors import say

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
FIRST_TOKEN_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    """The server's counters, gauges and histograms, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "lstmgen_requests",
            "API requests answered, by HTTP status (client_cut_off: the client left mid-body)",
            ["status"],
            registry=registry,
        )  # fmt: skip
        self.tokens = Counter(
            "lstmgen_tokens_generated", "Tokens generated, by model", ["model"], registry=registry
        )
        self.steps = Counter(
            "lstmgen_batch_steps", "Steps of the running batch, by model", ["model"],
            registry=registry,
        )  # fmt: skip
        self.batch = Gauge(
            "lstmgen_batch_samples", "Samples in the running batch now (priming included)",
            ["model"], registry=registry,
        )  # fmt: skip
        self.queue = Gauge(
            "lstmgen_queue_samples", "Samples waiting for a place in the batch", ["model"],
            registry=registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "lstmgen_batch_size", "Samples stepped together, once per hand-over (~10 ms)",
            ["model"], buckets=BATCH_BUCKETS, registry=registry,
        )  # fmt: skip
        self.first_token = Histogram(
            "lstmgen_time_to_first_token_seconds",
            "From a completion request's arrival to its first text",
            buckets=FIRST_TOKEN_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            "lstmgen_request_seconds", "From a completion request's arrival to its last byte",
            buckets=LATENCY_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.event_loop = Counter(
            "lstmgen_event_loop_seconds",
            "Time the event loop spent taking the batch's pieces and writing them to clients",
            registry=registry,
        )

    def text(self) -> tuple[bytes, str]:
        """The metrics in the Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


CUT_OFF = "client_cut_off"  # the status label of a request whose client left mid-body


class Observed:
    """ASGI middleware: counts each API request (/v1/...) by status, times completions, and
    logs one line per request: method, path, status, tokens, seconds."""

    def __init__(self, app, metrics: ServeMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int | str] = [500]
        body_done = [False]

        async def receiving():
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_done[0] = True
            elif message["type"] == "http.disconnect" and not body_done[0]:
                status[0] = CUT_OFF  # whatever the app answers, no client reads it
            return message

        async def sending(message) -> None:
            if message["type"] == "http.response.start" and status[0] != CUT_OFF:
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receiving, sending)
        finally:
            seconds = time.perf_counter() - started
            answer = scope.get("state", {}).get("answer")
            tokens = sum(answer.tokens) if answer is not None else 0
            self.metrics.requests.labels(status=str(status[0])).inc()
            if scope["path"] == "/v1/completions" and status[0] == 200:
                self.metrics.latency.observe(seconds)
            say(
                f"lstmgen: {scope['method']} {scope['path']} {status[0]} "
                f"{tokens} tokens {seconds:.3f} s"
            )
