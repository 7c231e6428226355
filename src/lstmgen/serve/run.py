"""Run the app with uvicorn: `lstmgen serve`. Ctrl-C or SIGTERM stop taking requests, let the
streams in flight finish (10 s at most) and return."""

from __future__ import annotations

import ipaddress
import signal
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from lstmgen.config import ServeConfig
from lstmgen.errors import say, warn
from lstmgen.serve.app import create_app


def serve(
    runs: Sequence[str | Path],
    settings: ServeConfig | None = None,
    *,
    device: str = "auto",
    checkpoint: str = "best",
    **options,
) -> None:
    """Serve these runs over HTTP until interrupted (options: ServeConfig's fields)."""
    config = settings or ServeConfig(**options)
    app = create_app(runs, config, device=device, checkpoint=checkpoint)
    if config.api_key is None and not _loopback(config.host):
        warn(
            f"listening on {config.host} without an API key: anyone who can reach it may use "
            "it; set --api-key or LSTMGEN_API_KEY"
        )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            timeout_graceful_shutdown=10,
        )
    )
    # uvicorn handles the signal, then raises it again for the handler before it: a quiet one,
    # so that a stop asked for is a clean exit (0), not an interruption.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    started = server.startup

    async def startup(sockets=None) -> None:
        await started(sockets)
        for server_socket in server.servers:
            for sock in server_socket.sockets:
                host, port = sock.getsockname()[:2]
                url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
                say(f"lstmgen: serving {', '.join(Path(r).resolve().name for r in runs)}")
                say(f"  page: {url}/   API: {url}/v1 (docs: {url}/docs)")
                return

    server.startup = startup  # type: ignore[method-assign]
    server.run()
    say("lstmgen: server stopped")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
