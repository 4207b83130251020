"""Draining: webhooks get 503 + Retry-After, /readyz apart from /healthz, the grace left."""

from __future__ import annotations

import asyncio

import httpx

from chatgate.app.asgi import build_app
from chatgate.app.lifecycle import RETRY_AFTER, Lifecycle
from chatgate.config import load_settings
from chatgate.errors import StoreError
from chatgate.sim.server import LoopbackServer
from chatgate.sim.wechat import WeChatSim
from chatgate.store.memory import MemoryStore
from tests.app.support import serve_app, value
from tests.e2e.harness import TOKEN, gateway_settings


def test_remaining_is_the_whole_grace_until_draining_begins_then_counts_down() -> None:
    now = [100.0]
    lifecycle = Lifecycle(20.0, clock=lambda: now[0])
    told: list[str] = []
    lifecycle.on_drain(lambda: told.append("drain"))
    now[0] += 50
    assert not lifecycle.draining and lifecycle.remaining() == 20.0
    lifecycle.begin_drain()
    now[0] += 5
    lifecycle.begin_drain()  # a second signal does not restart the clock
    assert lifecycle.draining and lifecycle.remaining() == 15.0
    now[0] += 60
    assert lifecycle.remaining() == 0.0
    assert told == ["drain"]


async def test_draining_refuses_webhooks_but_serves_health_pages_and_verification() -> None:
    async with serve_app() as gw, httpx.AsyncClient() as client:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        assert (await client.get(gw.url + "/readyz")).json() == {"status": "ready"}
        assert (await sim.send_text("u1", "before")).kind == "reply"

        gw.app.state.lifecycle.begin_drain()
        refused = await sim.send_text("u1", "during")
        ready = await client.get(gw.url + "/readyz")
        alive = await client.get(gw.url + "/healthz")
        verified = await sim.verify_url()
        metrics = (await client.get(gw.url + "/metrics")).text

    assert refused.kind == "error" and refused.tries == 1
    assert refused.raw[0].status == 503
    assert ready.status_code == 503 and ready.json() == {"status": "draining"}
    assert alive.status_code == 200
    assert verified
    assert value(metrics, "chatgate_draining") == 1
    assert (
        value(metrics, "chatgate_webhook_refused_total", channel="wechat_mp", reason="draining")
        == 1
    )
    # The refused message never reached the dispatcher.
    assert value(metrics, "chatgate_messages_received_total", channel="wechat_mp", kind="text") == 1


async def test_a_refused_webhook_says_when_to_retry_and_closes_the_connection() -> None:
    async with serve_app() as gw, httpx.AsyncClient() as client:
        gw.app.state.lifecycle.begin_drain()
        response = await client.post(gw.wechat_url, content=b"<xml/>")
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER)
    assert response.headers["connection"] == "close"


class UnreachableStore(MemoryStore):
    async def ping(self) -> None:
        raise StoreError("store unreachable")


async def test_readyz_reports_an_unreachable_store_while_healthz_stays_up() -> None:
    store = UnreachableStore()
    async with (
        serve_app(store) as gw,
        httpx.AsyncClient() as client,
    ):
        ready = await client.get(gw.url + "/readyz")
        alive = await client.get(gw.url + "/healthz")
    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
    assert alive.status_code == 200


async def test_draining_stops_the_loops_that_take_work_in_and_keeps_serving() -> None:
    values = gateway_settings("http://unused.invalid", llm_provider="fake")
    app = build_app(load_settings(environ={}, **values))
    started, stopped = asyncio.Event(), asyncio.Event()

    async def intake_loop() -> None:  # stands for a stream client or the job stream reader
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    app.state.services.background.append(intake_loop)
    async with LoopbackServer(app) as server, httpx.AsyncClient() as client:
        await asyncio.wait_for(started.wait(), 5)
        app.state.lifecycle.begin_drain()
        await asyncio.wait_for(stopped.wait(), 5)
        alive = await client.get(server.url + "/healthz")
    assert alive.status_code == 200
