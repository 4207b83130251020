"""Plain-ASGI webhook plumbing: query, headers, the body under a limit, one whole response."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import Message, Receive, Scope

from chatgate.channels.body import PayloadTooLarge, read_asgi_body
from chatgate.channels.raw_http import HttpReply, RawEndpoint, header, query_params


def scope(query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {"type": "http", "method": "POST", "query_string": query, "headers": headers or []}


def receiving(*messages: Message) -> Receive:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)

    return receive


def test_query_params_decode_percent_escapes_keep_blanks_and_take_the_last_of_a_repeat() -> None:
    params = query_params(scope(b"nonce=1%2B2&echostr=&signature=a&signature=b&plus=a+b"))
    assert params == {"nonce": "1+2", "echostr": "", "signature": "b", "plus": "a b"}


def test_header_finds_a_lowercase_name_or_none() -> None:
    s = scope(headers=[(b"host", b"gw"), (b"content-length", b"12")])
    assert header(s, b"content-length") == "12"
    assert header(s, b"content-type") is None


async def test_the_body_is_joined_from_its_chunks() -> None:
    receive = receiving(
        {"type": "http.request", "body": b"<xml>", "more_body": True},
        {"type": "http.request", "body": b"</xml>", "more_body": False},
    )
    assert await read_asgi_body(scope(), receive, 100) == b"<xml></xml>"


async def test_a_body_declared_too_large_is_refused_before_it_is_read() -> None:
    s = scope(headers=[(b"content-length", b"101")])

    async def never() -> Message:
        raise AssertionError("read although declared too large")

    with pytest.raises(PayloadTooLarge, match="101 bytes"):
        await read_asgi_body(s, never, 100)


async def test_a_body_that_grows_past_the_limit_undeclared_is_refused() -> None:
    receive = receiving(
        {"type": "http.request", "body": b"a" * 60, "more_body": True},
        {"type": "http.request", "body": b"a" * 60, "more_body": True},
    )
    with pytest.raises(PayloadTooLarge):
        await read_asgi_body(scope(), receive, 100)


async def test_a_client_gone_mid_body_is_a_client_disconnect() -> None:
    receive = receiving(
        {"type": "http.request", "body": b"<xml>", "more_body": True}, {"type": "http.disconnect"}
    )
    with pytest.raises(ClientDisconnect):
        await read_asgi_body(scope(), receive, 100)


async def test_a_raw_endpoint_is_routed_as_an_asgi_app_and_sends_one_whole_reply() -> None:
    seen: list[Any] = []

    async def handle(s: Scope, receive: Receive) -> HttpReply:
        seen.append(query_params(s))
        body = await read_asgi_body(s, receive, 100)
        return HttpReply(b"<xml>" + body + b"</xml>", status=201, content_type="application/xml")

    app = Starlette(routes=[Route("/hook", RawEndpoint(handle), methods=["POST"])])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        response = await client.post("/hook?a=1", content=b"hi")
        refused = await client.get("/hook")
    assert response.status_code == 201
    assert response.content == b"<xml>hi</xml>"
    assert response.headers["content-type"] == "application/xml"
    assert response.headers["content-length"] == "13"
    assert seen == [{"a": "1"}]
    assert refused.status_code == 405
