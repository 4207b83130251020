"""WeChatAPISim: WeChat's token, customer-service and typing rules, and its failure injection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.responses import PlainTextResponse, Response

from chatgate.sim.wechat import WeChatSim
from chatgate.sim.wechat_api import SEND_PATH, TYPING_PATH, WeChatAPISim
from tests.sim.fake_gateway import TOKEN, Received, gateway

APPID = "wxsimapi000000001"
SECRET = "s3cret"
USER = "o_user"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(clock: Clock) -> WeChatAPISim:
    return WeChatAPISim(appid=APPID, secret=SECRET, clock=clock)


@pytest.fixture
async def client(api: WeChatAPISim) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wechat") as c:
        yield c


async def classic(client: httpx.AsyncClient, secret: str = SECRET) -> dict[str, Any]:
    params = {"grant_type": "client_credential", "appid": APPID, "secret": secret}
    response = await client.get("/cgi-bin/token", params=params)
    assert response.status_code == 200
    return dict(response.json())


async def stable(client: httpx.AsyncClient, *, force: bool = False) -> dict[str, Any]:
    body = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    response = await client.post("/cgi-bin/stable_token", json={**body, "force_refresh": force})
    return dict(response.json())


async def send(client: httpx.AsyncClient, token: str, text: str, user: str = USER) -> int:
    body = {"touser": user, "msgtype": "text", "text": {"content": text}}
    response = await client.post(SEND_PATH, params={"access_token": token}, json=body)
    return int(response.json()["errcode"])


async def typing(client: httpx.AsyncClient, token: str, command: str = "Typing") -> int:
    body = {"touser": USER, "command": command}
    response = await client.post(TYPING_PATH, params={"access_token": token}, json=body)
    return int(response.json()["errcode"])


async def test_a_new_classic_token_leaves_the_old_one_valid_for_the_grace_only(
    client: httpx.AsyncClient, api: WeChatAPISim, clock: Clock
) -> None:
    api.user_wrote(USER)
    first = await classic(client)
    assert first["expires_in"] == 7200
    second = await classic(client)
    assert second["access_token"] != first["access_token"]
    assert await send(client, first["access_token"], "old still works") == 0
    clock.now += 301
    assert await send(client, first["access_token"], "old is gone") == 40001
    assert await send(client, second["access_token"], "new works") == 0
    assert api.token_calls("classic") == 2
    assert api.received(USER) == ["old still works", "new works"]


async def test_an_expired_token_gets_42001(
    client: httpx.AsyncClient, api: WeChatAPISim, clock: Clock
) -> None:
    token = (await classic(client))["access_token"]
    clock.now += 7201
    api.user_wrote(USER)
    assert await send(client, token, "late") == 42001


async def test_stable_token_is_the_same_until_near_expiry_and_isolated_from_classic(
    client: httpx.AsyncClient, api: WeChatAPISim, clock: Clock
) -> None:
    api.user_wrote(USER)
    one = await stable(client)
    classic_token = (await classic(client))["access_token"]
    two = await stable(client)
    assert one["access_token"] == two["access_token"]
    assert await send(client, one["access_token"], "stable survives a classic fetch") == 0
    assert await send(client, classic_token, "classic works too") == 0
    clock.now += 7200 - 200  # within the last 5 minutes: a renewed token
    three = await stable(client)
    assert three["access_token"] != one["access_token"]
    assert await send(client, one["access_token"], "overlap") == 0
    forced = await stable(client, force=True)
    assert forced["access_token"] != three["access_token"]
    assert await send(client, three["access_token"], "forced out") == 40001


async def test_bad_credentials_ip_and_quota_get_their_errcodes(clock: Clock) -> None:
    api = WeChatAPISim(appid=APPID, secret=SECRET, clock=clock, token_daily_quota=1)
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wechat") as client:
        assert (await classic(client, secret="wrong"))["errcode"] == 40125
        assert "access_token" in await classic(client)
        assert (await classic(client))["errcode"] == 45009
        api.ip_whitelisted = False
        assert (await stable(client))["errcode"] == 40164
    assert all("secret" not in call.body for call in api.calls)


async def test_sending_needs_the_user_to_have_written_within_48_hours(
    client: httpx.AsyncClient, api: WeChatAPISim, clock: Clock
) -> None:
    token = (await stable(client))["access_token"]
    assert await send(client, token, "unprompted") == 45015
    api.user_wrote(USER)
    assert await send(client, token, "answer") == 0
    clock.now += 48 * 3600 + 1
    token = (await stable(client))["access_token"]  # the old one expired meanwhile
    assert await send(client, token, "too late") == 45015
    assert api.received(USER) == ["answer"]


async def test_five_messages_per_user_message_then_45047(
    client: httpx.AsyncClient, api: WeChatAPISim
) -> None:
    token = (await stable(client))["access_token"]
    api.user_wrote(USER)
    assert [await send(client, token, f"part {i}") for i in range(6)] == [0] * 5 + [45047]
    api.user_wrote(USER)
    assert await send(client, token, "after a new message") == 0
    api.user_wrote(USER, "event")  # events do not open a new quota
    assert [await send(client, token, f"more {i}") for i in range(5)] == [0] * 4 + [45047]


async def test_text_over_the_byte_limit_gets_45002_and_nothing_is_delivered(
    client: httpx.AsyncClient, api: WeChatAPISim
) -> None:
    token = (await stable(client))["access_token"]
    api.user_wrote(USER)
    assert await send(client, token, "字" * 683) == 45002  # 2049 bytes
    assert await send(client, token, "字" * 682 + "ab") == 0  # 2048 bytes
    assert len(api.received(USER)) == 1


async def test_an_unverified_account_may_not_send_or_type(
    client: httpx.AsyncClient, api: WeChatAPISim
) -> None:
    api.verified = False
    token = (await stable(client))["access_token"]
    api.user_wrote(USER)
    assert await send(client, token, "x") == 48001
    assert await typing(client, token) == 48001
    assert api.received(USER) == []


async def test_typing_needs_a_recent_interaction_and_lasts_15_seconds(
    client: httpx.AsyncClient, api: WeChatAPISim, clock: Clock
) -> None:
    token = (await stable(client))["access_token"]
    assert await typing(client, token) == 45080
    api.user_wrote(USER)
    assert await typing(client, token) == 0
    clock.now += 10
    assert await typing(client, token) == 45081  # still showing
    clock.now += 6
    assert await typing(client, token) == 0  # renewed after it ran out
    assert await send(client, token, "answer") == 0  # a message ends it …
    assert await typing(client, token) == 0  # … so typing may start again at once
    clock.now += 15
    assert await typing(client, token) == 45080  # 31 s after the user last wrote
    assert await typing(client, token, "Dance") == 45072
    assert [t.at for t in api.typing] == [clock.now - 31, clock.now - 15, clock.now - 15]


async def test_injected_failures_hit_the_next_calls_then_stop(
    client: httpx.AsyncClient, api: WeChatAPISim
) -> None:
    token = (await stable(client))["access_token"]
    api.user_wrote(USER)
    api.fail_next(2, errcode=-1)
    api.fail_next(1, status=503)
    assert [await send(client, token, "a"), await send(client, token, "b")] == [-1, -1]
    response = await client.post(
        SEND_PATH,
        params={"access_token": token},
        json={"touser": USER, "msgtype": "text", "text": {"content": "c"}},
    )
    assert response.status_code == 503
    assert await send(client, token, "d") == 0
    assert api.received(USER) == ["d"]
    assert api.errcodes() == [-1, -1, -1, 0]


async def test_invalidated_tokens_get_40001_and_a_stable_call_hands_out_a_new_one(
    client: httpx.AsyncClient, api: WeChatAPISim
) -> None:
    old = (await stable(client))["access_token"]
    api.user_wrote(USER)
    api.invalidate_tokens()
    assert await send(client, old, "x") == 40001
    new = (await stable(client))["access_token"]
    assert new != old
    assert await send(client, new, "y") == 0


async def test_wechat_sim_tells_the_api_when_a_user_writes(api: WeChatAPISim) -> None:
    async def ack(seen: Received) -> Response:
        return PlainTextResponse("success")

    async with gateway(ack) as (url, _), api.serve() as base, httpx.AsyncClient() as client:
        sim = WeChatSim(url, TOKEN, timeout=1.0, on_message=api.user_wrote)
        grant = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
        token = (await client.post(base + "/cgi-bin/stable_token", json=grant)).json()[
            "access_token"
        ]
        body = {"touser": USER, "msgtype": "text", "text": {"content": "hi"}}
        before = await client.post(base + SEND_PATH, params={"access_token": token}, json=body)
        await sim.send_text(USER, "你好")
        after = await client.post(base + SEND_PATH, params={"access_token": token}, json=body)
    assert before.json()["errcode"] == 45015
    assert after.json()["errcode"] == 0
