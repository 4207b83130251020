"""LoopbackServer: any ASGI app on a free loopback port, in the test's own event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from chatgate.sim.server import LoopbackServer, LoopbackStartupError


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def app_with(*routes: Route) -> Starlette:
    return Starlette(routes=[Route("/", hello), *routes])


async def test_serves_the_app_on_a_loopback_url() -> None:
    async with LoopbackServer(app_with()) as server, httpx.AsyncClient() as client:
        assert server.url.startswith("http://127.0.0.1:")
        response = await client.get(server.url + "/")
    assert response.text == "hello"


async def test_two_servers_get_different_ports() -> None:
    async with LoopbackServer(app_with()) as one, LoopbackServer(app_with()) as two:
        assert one.port != two.port


async def test_stops_listening_when_the_block_ends() -> None:
    async with LoopbackServer(app_with()) as server:
        url = server.url + "/"
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(url)


async def test_shutdown_does_not_wait_forever_for_a_hanging_request() -> None:
    entered = asyncio.Event()

    async def hang(request: Request) -> Response:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with httpx.AsyncClient() as client:
        async with LoopbackServer(app_with(Route("/hang", hang)), grace=0) as server:
            pending = asyncio.create_task(client.get(server.url + "/hang", timeout=30))
            await entered.wait()
        # Reaching here is the point; the cut-off request must not look like a success.
        try:
            response = await pending
        except httpx.HTTPError:
            return
    assert response.status_code >= 500


async def test_runs_the_app_lifespan() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    async with LoopbackServer(Starlette(lifespan=lifespan)):
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


async def test_a_failing_lifespan_raises_instead_of_exiting() -> None:
    @asynccontextmanager
    async def broken(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield

    with pytest.raises(LoopbackStartupError):
        async with LoopbackServer(Starlette(lifespan=broken)):
            pass
