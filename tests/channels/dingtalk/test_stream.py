"""The Stream client against the simulated gateway: acks, pings, reconnects and the watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from chatgate.channels.dingtalk.stream import StreamClient, ack_frame
from chatgate.errors import BadRequest
from chatgate.sim.dingtalk import DingTalkSim


@dataclass
class Handler:
    received: list[dict[str, Any]] = field(default_factory=list)
    fail_first: Exception | None = None

    async def __call__(self, data: dict[str, Any]) -> None:
        self.received.append(data)
        if self.fail_first is not None:
            failure, self.fail_first = self.fail_first, None
            raise failure


@contextlib.asynccontextmanager
async def running(
    sim: DingTalkSim, handler: Handler, *, secret: str | None = None, **options: Any
) -> AsyncIterator[StreamClient]:
    async with httpx.AsyncClient(timeout=5) as http:
        client = StreamClient(
            http,
            api_base=sim.api_base,
            client_id=sim.client_id,
            client_secret=sim.client_secret if secret is None else secret,
            handle=handler,
            **options,
        )
        task = asyncio.create_task(client.run())
        try:
            yield client
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def sim() -> AsyncIterator[DingTalkSim]:
    async with DingTalkSim(ack_timeout=2.0).serve() as s:
        yield s


async def test_a_message_is_handed_over_and_acked_in_the_sdk_format(sim: DingTalkSim) -> None:
    handler = Handler()
    async with running(sim, handler) as client:
        await asyncio.wait_for(client.connected.wait(), 5)
        sent = await sim.send_text("u1", "你好")
    assert [d["msgId"] for d in handler.received] == [sent.msg_id]
    [ack] = sim.gateway.acks
    assert (ack.code, ack.late, json.loads(ack.data)) == (200, False, {"response": None})
    assert sim.gateway.bad_acks == [] and sim.gateway.refused == []
    subscriptions = sim.gateway.subscriptions[0]
    assert {"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"} in subscriptions


def test_ack_frames_follow_the_protocol() -> None:
    frame = json.loads(ack_frame("m-1", 200, {"response": None}))
    assert frame == {
        "code": 200,
        "headers": {"messageId": "m-1", "contentType": "application/json"},
        "message": "OK",
        "data": '{"response": null}',
    }


async def test_a_message_that_could_not_be_accepted_is_acked_500_and_comes_again(
    sim: DingTalkSim,
) -> None:
    handler = Handler(fail_first=RuntimeError("store down"))
    async with running(sim, handler) as client:
        await asyncio.wait_for(client.connected.wait(), 5)
        sent = await sim.send_text("u1", "你好")
        await asyncio.wait_for(sent.pushes[0].acked.wait(), 5)
    assert [d["msgId"] for d in handler.received] == [sent.msg_id, sent.msg_id]
    assert [a.code for a in sim.gateway.acks] == [500, 200]


async def test_a_malformed_message_is_acked_and_not_redelivered(sim: DingTalkSim) -> None:
    handler = Handler(fail_first=BadRequest("callback without msgId"))
    async with running(sim, handler) as client:
        await asyncio.wait_for(client.connected.wait(), 5)
        sent = await sim.send_text("u1", "你好")
        await asyncio.wait_for(sent.pushes[0].acked.wait(), 5)
    assert len(handler.received) == 1 and sent.pushes[0].attempts == 1


async def test_system_pings_are_echoed(sim: DingTalkSim) -> None:
    async with running(sim, Handler()) as client:
        await asyncio.wait_for(client.connected.wait(), 5)
        assert await sim.gateway.system_ping()


async def test_a_disconnect_request_leads_to_a_new_connection_with_a_new_ticket(
    sim: DingTalkSim,
) -> None:
    handler = Handler()
    async with running(sim, handler) as client:
        await sim.gateway.wait_connections(1)
        await sim.gateway.disconnect(grace=5)
        await sim.gateway.wait_connections(2)
        await sim.send_text("u1", "重连后")
    assert client.connections == 2 and sim.gateway.refused == []
    assert len(handler.received) == 1


@pytest.mark.parametrize("abrupt", [True, False])
async def test_a_dropped_connection_is_replaced_at_once(sim: DingTalkSim, abrupt: bool) -> None:
    handler = Handler()
    async with running(sim, handler, backoff=30.0):
        await sim.gateway.wait_connections(1)
        await sim.send_text("u1", "第一条")  # a healthy connection: no backoff after it
        await sim.gateway.drop(abrupt=abrupt)
        await sim.gateway.wait_connections(2, within=5)
        await sim.send_text("u1", "第二条")
    assert len(handler.received) == 2


async def test_the_watchdog_replaces_a_connection_that_stopped_answering(
    sim: DingTalkSim,
) -> None:
    handler = Handler()
    async with running(sim, handler, ping_interval=0.3, pong_timeout=1.0):
        await sim.gateway.wait_connections(1)
        await sim.send_text("u1", "之前")
        assert sim.gateway.stall() == 1  # no pongs, no frames: a half-dead socket
        sent = await sim.send_text("u1", "之后", wait=None)
        await sim.gateway.wait_connections(2, within=10)
        await asyncio.wait_for(sent.pushes[0].acked.wait(), 10)
    assert [d["text"]["content"] for d in handler.received] == ["之前", "之后"]


async def test_wrong_credentials_are_retried_with_growing_pauses(sim: DingTalkSim) -> None:
    async with running(sim, Handler(), secret="wrong", backoff=0.2):
        await asyncio.sleep(1.5)
    attempts = sim.api.calls["/v1.0/gateway/connections/open"]
    # Immediately, then after ≥0.2, ≥0.4, ≥0.8 s: at most 4 tries in 1.5 s, whatever the load.
    assert 2 <= attempts <= 4
    assert sim.gateway.opened == 0
