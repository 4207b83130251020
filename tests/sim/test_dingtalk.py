"""The DingTalk simulator itself, driven over its public protocol only (raw HTTP and WebSocket)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from chatgate.sim.dingtalk import DEFAULT_TEMPLATE, DingTalkSim
from chatgate.sim.server import LoopbackServer


@pytest.fixture
async def sim() -> AsyncIterator[DingTalkSim]:
    async with DingTalkSim(ack_timeout=0.3, max_redeliveries=2).serve() as s:
        yield s


async def open_ticket(sim: DingTalkSim, secret: str | None = None) -> httpx.Response:
    body = {
        "clientId": sim.client_id,
        "clientSecret": sim.client_secret if secret is None else secret,
        "subscriptions": [{"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"}],
    }
    async with httpx.AsyncClient() as client:
        return await client.post(sim.api_base + "/v1.0/gateway/connections/open", json=body)


def ws_url(opened: httpx.Response) -> str:
    data = opened.json()
    return f"{data['endpoint']}?ticket={quote_plus(data['ticket'])}"


async def api(
    sim: DingTalkSim, method: str, path: str, body: dict[str, Any], token: str | None = None
) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        if token is None:
            issued = await client.post(
                sim.api_base + "/v1.0/oauth2/accessToken",
                json={"appKey": sim.client_id, "appSecret": sim.client_secret},
            )
            token = issued.json()["accessToken"]
        headers = {"x-acs-dingtalk-access-token": token}
        return await client.request(method, sim.api_base + path, json=body, headers=headers)


async def test_connection_open_checks_credentials_and_tickets_are_single_use(
    sim: DingTalkSim,
) -> None:
    assert (await open_ticket(sim, secret="wrong")).status_code == 401
    opened = await open_ticket(sim)
    assert opened.status_code == 200
    async with connect(ws_url(opened)):
        assert sim.gateway.opened == 1
    with pytest.raises(InvalidStatus):
        async with connect(ws_url(opened)):
            pass
    assert sim.gateway.refused == ["ticket already used"]


async def test_an_unacked_frame_is_delivered_again_with_a_new_message_id(
    sim: DingTalkSim,
) -> None:
    async with connect(ws_url(await open_ticket(sim))) as ws:
        sent = await sim.send_text("u1", "你好", wait=None)
        frames = [json.loads(await ws.recv()) for _ in range(3)]  # never acked
        ids = [f["headers"]["messageId"] for f in frames]
        assert len(set(ids)) == 3
        assert {json.loads(f["data"])["msgId"] for f in frames} == {sent.msg_id}
        assert frames[0]["type"] == "CALLBACK"
        assert frames[0]["headers"]["topic"] == "/v1.0/im/bot/messages/get"
        # A late ack is recorded as such; the gateway has already given up by now.
        ack = {"code": 200, "headers": {"messageId": ids[0]}, "message": "OK", "data": "{}"}
        await ws.send(json.dumps(ack))
        await asyncio.wait_for(sim.gateway.ack_received.wait(), 5)
        await asyncio.wait_for(sent.pushes[0].settled.wait(), 5)
    assert sim.gateway.acks[0].late
    assert sent.pushes[0].lost and sent.pushes[0].attempts == 3


async def test_an_ack_in_time_ends_delivery_and_malformed_acks_are_reported(
    sim: DingTalkSim,
) -> None:
    async with connect(ws_url(await open_ticket(sim))) as ws:
        sent = await sim.send_text("u1", "你好", wait=None)
        frame = json.loads(await ws.recv())
        await ws.send("not json")
        ack = {"code": 200, "headers": {"messageId": frame["headers"]["messageId"]}, "data": "{}"}
        await ws.send(json.dumps(ack))
        await sent.pushes[0].acked.wait()
    assert sent.pushes[0].attempts == 1
    assert len(sim.gateway.bad_acks) == 1


async def test_messages_wait_for_a_client_to_connect(sim: DingTalkSim) -> None:
    sent = await sim.send_text("u1", "离线时发的", wait=None)
    async with connect(ws_url(await open_ticket(sim))) as ws:
        frame = json.loads(await ws.recv())
    assert json.loads(frame["data"])["msgId"] == sent.msg_id


async def test_group_messages_reach_the_robot_only_when_they_mention_it(
    sim: DingTalkSim,
) -> None:
    quiet = await sim.send_text("u1", "闲聊", group="cidG", at_bot=False, wait=None)
    assert not quiet.delivered and quiet.pushes == []
    data = sim.message("u1", "问题", group="cidG", mention_text=True)
    assert data["conversationType"] == "2" and data["isInAtList"] is True
    assert data["text"]["content"] == f"@{sim.bot_name} 问题"
    assert sim.message("u1", "问题", group="cidG")["text"]["content"] == " 问题"


async def test_session_webhooks_work_until_they_expire(sim: DingTalkSim) -> None:
    data = sim.message("u1", "你好")
    assert data["sessionWebhookExpiredTime"] - data["createAt"] == 5_400_000
    body = {"msgtype": "markdown", "markdown": {"title": "t", "text": "**回答**"}}
    async with httpx.AsyncClient() as client:
        ok = await client.post(data["sessionWebhook"], json=body)
        sim.expire_sessions("u1")
        gone = await client.post(data["sessionWebhook"], json=body)
        huge = {"msgtype": "text", "text": {"content": "字" * 7000}}
        fresh = sim.message("u1", "再问")
        too_long = await client.post(fresh["sessionWebhook"], json=huge)
    assert ok.json()["errcode"] == 0 and gone.json()["errcode"] == 300001
    assert too_long.json()["errcode"] != 0
    assert sim.texts("u1") == ["**回答**"]
    assert [c.errcode for c in sim.webhook_calls][:2] == [0, 300001]


async def test_tokens_are_reused_while_valid_and_revoked_ones_are_refused(
    sim: DingTalkSim,
) -> None:
    async with httpx.AsyncClient() as client:
        creds = {"appKey": sim.client_id, "appSecret": sim.client_secret}
        url = sim.api_base + "/v1.0/oauth2/accessToken"
        first = (await client.post(url, json=creds)).json()
        second = (await client.post(url, json=creds)).json()
        wrong = await client.post(url, json={**creds, "appSecret": "x"})
    assert first["accessToken"] == second["accessToken"] and first["expireIn"] == 7200
    assert wrong.status_code == 400
    sim.revoke_tokens()
    refused = await api(sim, "POST", "/v1.0/robot/groupMessages/send", {}, first["accessToken"])
    assert refused.status_code == 401 and refused.json()["code"] == "InvalidAuthentication"


def markdown(text: str) -> dict[str, str]:
    return {
        "msgKey": "sampleMarkdown",
        "msgParam": json.dumps({"title": "t", "text": text}, ensure_ascii=False),
    }


async def test_robot_sends_are_checked_and_recorded_per_chat(sim: DingTalkSim) -> None:
    robot = sim.robot_code
    batch = "/v1.0/robot/oToMessages/batchSend"
    group = "/v1.0/robot/groupMessages/send"
    ok = await api(sim, "POST", batch, {"robotCode": robot, "userIds": ["u1"], **markdown("你好")})
    assert ok.status_code == 200 and "processQueryKey" in ok.json()
    await api(
        sim, "POST", group, {"robotCode": robot, "openConversationId": "cidG", **markdown("群")}
    )
    bad_robot = await api(
        sim, "POST", batch, {"robotCode": "x", "userIds": ["u1"], **markdown("a")}
    )
    not_string = await api(
        sim,
        "POST",
        batch,
        {
            "robotCode": robot,
            "userIds": ["u1"],
            "msgKey": "sampleMarkdown",
            "msgParam": {"title": "t", "text": "a"},
        },
    )
    too_long = await api(
        sim,
        "POST",
        group,
        {"robotCode": robot, "openConversationId": "cidG", **markdown("字" * 5001)},
    )
    assert bad_robot.status_code == 400 and not_string.status_code == 400
    assert too_long.json()["code"] == "invalidParameter.msgParam.tooLong"
    assert [(s.via, s.msgtype, s.text) for s in sim.shown("u1")] == [
        ("openapi", "markdown", "你好")
    ]
    assert sim.texts("cidG") == ["群"]
    assert sim.api_calls() == {batch: 3, group: 2}


async def test_ai_cards_record_every_update_and_enforce_the_protocol(sim: DingTalkSim) -> None:
    create = {
        "cardTemplateId": DEFAULT_TEMPLATE,
        "outTrackId": "track-1",
        "cardData": {"cardParamMap": {"content": ""}},
        "openSpaceId": "dtv1.card//IM_GROUP.cidG",
        "imGroupOpenDeliverModel": {"robotCode": sim.robot_code},
    }
    path = "/v1.0/card/instances/createAndDeliver"
    assert (await api(sim, "POST", path, create)).status_code == 200
    assert (await api(sim, "POST", path, create)).status_code == 200  # same card again
    unpublished = await api(sim, "POST", path, {**create, "cardTemplateId": "nope"})
    assert unpublished.json()["code"] == "param.templateUnpublished"

    def update(guid: str, content: str, **flags: Any) -> dict[str, Any]:
        return {
            "outTrackId": "track-1",
            "guid": guid,
            "key": "content",
            "content": content,
            **flags,
        }

    stream = "/v1.0/card/streaming"
    await api(sim, "PUT", stream, update("g1", "你", isFull=True))
    await api(sim, "PUT", stream, update("g2", "好", isFull=False))
    await api(sim, "PUT", stream, update("g2", "好", isFull=False))  # a retry: applied once
    wrong_key = await api(sim, "PUT", stream, {**update("g3", "x"), "key": "msgContent"})
    no_card = await api(sim, "PUT", stream, {**update("g4", "x"), "outTrackId": "nope"})
    await api(sim, "PUT", stream, update("g5", "你好。", isFull=True, isFinalize=True))
    assert wrong_key.json()["code"] == "param.stream.key"
    assert no_card.json()["code"] == "param.stream.outTrackId"
    [card] = sim.cards("cidG")
    assert [u.shown for u in card.updates] == ["你", "你好", "你好。"]
    assert card.state == "finished" and card.content == "你好。"
    assert [s.via for s in sim.shown("cidG")] == ["card"]


async def test_http_callbacks_are_posted_signed_as_dingtalk_signs_them() -> None:
    seen: list[tuple[dict[str, str], dict[str, Any]]] = []

    async def gateway(request: Request) -> Response:
        seen.append((dict(request.headers), await request.json()))
        return JSONResponse({"msgtype": "empty"})

    app = Starlette(routes=[Route("/dingtalk", gateway, methods=["POST"])])
    async with LoopbackServer(app) as server, DingTalkSim().serve() as sim:
        sim.callback_url = server.url + "/dingtalk"
        sent = await sim.send_text("u1", "你好", redeliver=1)
    assert [p.status for p in sent.posts] == [200, 200]
    headers, body = seen[0]
    expected = base64.b64encode(
        hmac.new(
            sim.client_secret.encode(),
            f"{headers['timestamp']}\n{sim.client_secret}".encode(),
            hashlib.sha256,
        ).digest()
    ).decode()
    assert headers["sign"] == expected
    assert body["msgId"] == sent.msg_id == seen[1][1]["msgId"]
