"""A limit on request bodies, answered 413 in the API's error envelope before they are read
whole (a client cannot make the server hold a huge body in memory)."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lstmgen.serve.schemas import error_response


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 before it is read."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            return await too_large(self.limit)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, f"the request body is over {self.limit:,} bytes")
            return message

        return await self.app(scope, counted, send)


def too_large(limit: int) -> JSONResponse:
    """The 413 answer to a body that declares more than `limit` bytes."""
    return error_response(413, f"the request body is over {limit:,} bytes")
