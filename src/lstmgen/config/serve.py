"""Settings of `lstmgen serve` (ServeConfig): where it listens, who may call it, its limits."""

from __future__ import annotations

from dataclasses import dataclass

from lstmgen.config.options import Section, option
from lstmgen.errors import LstmgenError

SERVING = "Serving"
API_KEY_ENV = "LSTMGEN_API_KEY"


@dataclass
class ServeConfig(Section):
    host: str = option(
        "127.0.0.1",
        "Address to listen on; 0.0.0.0 for every interface (set --api-key then).",
        panel=SERVING,
    )
    port: int = option(8000, "Port to listen on (0: any free one).", panel=SERVING)
    api_key: str | None = option(
        help=f"Clients must send 'Authorization: Bearer KEY' ({API_KEY_ENV} sets it too).",
        panel=SERVING,
    )
    max_batch: int = option(
        64, "Samples stepped together per model; more requests wait their turn.", panel=SERVING
    )
    max_tokens: int = option(4000, "The most max_tokens a request may ask for.", panel=SERVING)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise LstmgenError(f"--port {self.port} must be between 0 and 65535")
        if self.api_key is not None and not self.api_key.strip():
            raise LstmgenError("--api-key is empty; give a key, or leave the option out")
        if self.max_batch < 1:
            raise LstmgenError(f"--max-batch {self.max_batch} must be at least 1")
        if self.max_tokens < 1:
            raise LstmgenError(f"--max-tokens {self.max_tokens} must be at least 1")
