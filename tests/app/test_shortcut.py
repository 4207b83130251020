"""The webhook shortcut: POSTs to webhook paths skip the router; everything else goes its way."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from chatgate.app.shortcut import WebhookShortcut, webhook_endpoints
from chatgate.sim.wechat import WeChatSim
from tests.app.support import serve_app
from tests.e2e.harness import TOKEN


async def _served_by(request: Request) -> Response:
    # The router names the endpoint it matched in the scope; the shortcut does not.
    how = "router" if "endpoint" in request.scope else "shortcut"
    return PlainTextResponse(f"{request.method} {how} {(await request.body()).decode()}")


async def _fails(request: Request) -> Response:
    raise RuntimeError("endpoint bug")


def _sync_endpoint(request: Request) -> Response:
    return PlainTextResponse("sync")


def _app(paths: set[str]) -> Starlette:
    routes = [
        Route("/hook", _served_by, methods=["GET", "POST"]),
        Route("/other", _served_by, methods=["POST"]),
        Route("/broken", _fails, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(WebhookShortcut, endpoints=webhook_endpoints(routes, paths))],
    )


async def _post(app: Starlette, path: str, *, root_path: str = "") -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.post(path, content=b"hi")


def test_only_plain_async_post_routes_at_webhook_paths_are_taken() -> None:
    routes = [
        Route("/hook", _served_by, methods=["POST"]),
        Route("/hook", _fails, methods=["POST"]),  # shadowed: the router would pick the first
        Route("/get-only", _served_by, methods=["GET"]),
        Route("/sync", _sync_endpoint, methods=["POST"]),
        Route("/user/{name}", _served_by, methods=["POST"]),
        Route("/elsewhere", _served_by, methods=["POST"]),
        Mount("/mounted", app=_app(set())),
    ]
    paths = {"/hook", "/get-only", "/sync", "/user/{name}", "/mounted"}
    endpoints = webhook_endpoints(routes, paths)
    assert list(endpoints) == ["/hook"]
    assert getattr(endpoints["/hook"], "endpoint", None) is _served_by


class _AsgiEndpoint:
    """An endpoint that is a plain ASGI app, as the WeChat webhook's is."""

    def __init__(self) -> None:
        self.called = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.called += 1
        await PlainTextResponse("asgi")(scope, receive, send)


async def test_an_endpoint_mounted_as_an_asgi_app_is_called_as_it_is() -> None:
    raw = _AsgiEndpoint()
    routes = [Route("/raw", raw, methods=["POST"])]
    assert webhook_endpoints(routes, {"/raw"}) == {"/raw": raw}
    app = Starlette(
        routes=routes,
        middleware=[Middleware(WebhookShortcut, endpoints=webhook_endpoints(routes, {"/raw"}))],
    )
    response = await _post(app, "/raw")
    assert (response.status_code, response.text, raw.called) == (200, "asgi", 1)


async def test_a_post_to_a_webhook_path_reaches_its_endpoint_without_the_router() -> None:
    response = await _post(_app({"/hook"}), "/hook")
    assert (response.status_code, response.text) == (200, "POST shortcut hi")


async def test_other_methods_and_paths_still_go_through_the_router() -> None:
    app = _app({"/hook"})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        got = await client.get("/hook")
        other = await client.post("/other", content=b"x")
        missing = await client.post("/nowhere", content=b"x")
    assert got.text == "GET router "
    assert other.text == "POST router x"
    assert missing.status_code == 404


async def test_a_request_under_a_root_path_is_left_to_the_router() -> None:
    response = await _post(_app({"/hook"}), "/hook", root_path="/prefix")
    assert response.text.startswith("POST router")


async def test_a_failing_endpoint_still_gets_a_500_and_its_error_reaches_the_server() -> None:
    response = await _post(_app({"/broken"}), "/broken")
    assert response.status_code == 500
    # Re-raised past the response, as the router's way does: uvicorn logs it.
    transport = httpx.ASGITransport(app=_app({"/broken"}))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        with pytest.raises(RuntimeError, match="endpoint bug"):
            await client.post("/broken")


async def test_the_gateway_takes_wechat_messages_past_its_router() -> None:
    routed: list[tuple[str, str]] = []
    async with serve_app() as gw:
        router = gw.app.router
        walk = router.middleware_stack

        async def counting(scope: Scope, receive: Receive, send: Send) -> None:
            routed.append((scope["method"], scope["path"]))
            await walk(scope, receive, send)

        router.middleware_stack = counting
        sim = WeChatSim(gw.wechat_url, TOKEN)
        assert await sim.verify_url()
        reply = await sim.send_text("u1", "hello")
    path = gw.app.state.services.settings.wechat_path
    assert reply.kind == "reply"
    assert routed == [("GET", path)]  # the verification GET only, never the message
