"""Run the app with uvicorn: `lstmgen serve`. Ctrl-C or SIGTERM stop taking requests, let the
streams in flight finish (10 s at most) and return."""

from __future__ import annotations

import errno
import ipaddress
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from lstmgen.config import ServeConfig
from lstmgen.errors import LstmgenError, say, warn
from lstmgen.serve.app import create_app


def serve(
    runs: Sequence[str | Path],
    settings: ServeConfig | None = None,
    *,
    device: str = "auto",
    checkpoint: str = "best",
    precision: str = "auto",
    **options,
) -> None:
    """Serve these runs over HTTP until interrupted (options: ServeConfig's fields)."""
    config = settings or ServeConfig(**options)
    listening = bound_socket(config.host, config.port)  # before the runs load: errors at once
    app = create_app(runs, config, device=device, checkpoint=checkpoint, precision=precision)
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
    server.run(sockets=[listening])
    say("lstmgen: server stopped")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host and port as uvicorn binds one, or a one-line LstmgenError
    saying why it cannot be (uvicorn would log the OS's words and exit 3)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise LstmgenError(_cannot_listen(host, port, error)) from None
    sock.set_inheritable(True)
    return sock


def _cannot_listen(host: str, port: int, error: OSError) -> str:
    hosts = "127.0.0.1 (this machine only) or 0.0.0.0 (every network interface)"
    if isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL:
        return (
            f"--host {host} is not an address of this machine (or a name that resolves to "
            f"one); give {hosts}"
        )
    if error.errno == errno.EADDRINUSE:
        return f"--port {port} is already in use on {host}; choose another --port (0: any free one)"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"--port {port} needs privileges here; choose a port above 1023"
    return f"cannot listen on {host}:{port} ({(error.strerror or str(error)).lower()})"
