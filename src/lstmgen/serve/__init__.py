"""`lstmgen serve`: an OpenAI-compatible HTTP API, request batching and a web playground.

Needs the `serve` extra (FastAPI, uvicorn): pip install 'lstmgen[serve]'.
"""

from __future__ import annotations

from lstmgen.serve.app import create_app
from lstmgen.serve.run import serve

__all__ = ["create_app", "serve"]
