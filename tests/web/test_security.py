"""The pages' security headers middleware, and the one 404."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from chatgate.web.security import CSP, SecurityHeaders, not_found


async def hello(request: Request) -> Response:
    return PlainTextResponse("hi", headers={"Cache-Control": "max-age=60"})


def client(app: Starlette | SecurityHeaders) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_every_response_gets_the_headers_and_no_store_wins() -> None:
    app = SecurityHeaders(Starlette(routes=[Route("/", hello)]))
    async with client(app) as c:
        ok = await c.get("/")
        missing = await c.get("/nowhere")
    for response in (ok, missing):
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
    assert ok.text == "hi"


def test_the_policy_allows_no_inline_script_and_no_outside_resource() -> None:
    directives = dict(d.split(" ", 1) for d in CSP.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["img-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CSP


async def test_cache_control_can_be_chosen_for_static_files() -> None:
    app = SecurityHeaders(Starlette(routes=[Route("/", hello)]), cache_control="public")
    async with client(app) as c:
        response = await c.get("/")
    assert response.headers["cache-control"] == "public"


async def test_non_http_scopes_pass_through_untouched() -> None:
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> dict[str, str]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, object]) -> None:
        raise AssertionError("nothing is sent")

    await SecurityHeaders(inner)({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]


def test_not_found_is_always_the_same_plain_response() -> None:
    first, second = not_found(), not_found()
    assert first.status_code == second.status_code == 404
    assert first.body == second.body == b"Not Found"
    assert first.headers.items() == second.headers.items()
    assert first.headers["content-type"].startswith("text/plain")
