"""Reading a webhook's body with a size limit, shared by every channel's endpoint."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope

from chatgate.channels.raw_http import header
from chatgate.errors import BadRequest


class PayloadTooLarge(BadRequest):
    status_code = 413


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading them all."""
    return await read_asgi_body(request.scope, request.receive, limit)


async def read_asgi_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """``read_body`` for a plain ASGI endpoint."""
    declared = header(scope, b"content-length") or ""
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes exceeds {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
