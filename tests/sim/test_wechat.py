"""WeChatSim against a small test gateway over loopback HTTP, with WeChat's timing scaled down."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from starlette.responses import JSONResponse, PlainTextResponse, Response
from wechatpy.crypto import WeChatCrypto

from chatgate.sim.wechat import SERVICE_UNAVAILABLE, WeChatSim
from tests.sim.fake_gateway import (
    ACCOUNT,
    TOKEN,
    USER,
    Handler,
    Received,
    fields_of,
    gateway,
    sha1_of,
    text_reply,
    xml_response,
)

TIMEOUT = 0.5  # WeChat's 5 s, scaled down
SLOW = 3 * TIMEOUT
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wxb11529c136998cb6"


def sim_for(url: str, **kwargs: Any) -> WeChatSim:
    return WeChatSim(url, TOKEN, timeout=TIMEOUT, **kwargs)


async def echo(seen: Received) -> Response:
    return xml_response(text_reply("echo: " + fields_of(seen.body)["Content"]))


async def test_a_fast_reply_is_shown_after_one_try() -> None:
    async with gateway(echo) as (url, gw):
        outcome = await sim_for(url).send_text(USER, "你好")
    assert (outcome.kind, outcome.text, outcome.tries) == ("reply", "echo: 你好", 1)
    assert len(gw.received) == 1
    assert outcome.raw[0].status == 200


async def test_the_post_is_signed_and_carries_the_message() -> None:
    async with gateway(echo) as (url, gw):
        outcome = await sim_for(url).send_text(USER, "hi")
    params = gw.received[0].params
    assert params["signature"] == sha1_of(TOKEN, params["timestamp"], params["nonce"])
    assert params["openid"] == USER
    assert "encrypt_type" not in params
    message = fields_of(gw.received[0].body)
    assert message["ToUserName"] == ACCOUNT
    assert message["FromUserName"] == USER
    assert message["MsgType"] == "text"
    assert message["CreateTime"].isdigit()
    assert message["MsgId"] == outcome.msg_id


async def test_each_message_gets_a_fresh_msg_id() -> None:
    async with gateway(echo) as (url, gw):
        sim = sim_for(url)
        await sim.send_text(USER, "one")
        await sim.send_text(USER, "two")
    first, second = (fields_of(r.body)["MsgId"] for r in gw.received)
    assert first != second
    assert 0 < int(first) < 2**64


async def test_a_slow_first_try_is_dropped_and_the_retry_answer_shown() -> None:
    async def slow_then_fast(seen: Received) -> Response:
        if seen.attempt == 1:
            await asyncio.sleep(SLOW)
            return xml_response(text_reply("late"))
        return xml_response(text_reply("fast"))

    async with gateway(slow_then_fast) as (url, gw):
        outcome = await sim_for(url).send_text(USER, "q")
    assert (outcome.kind, outcome.text, outcome.tries) == ("reply", "fast", 2)
    assert outcome.raw[0].error == "timeout"
    assert outcome.raw[0].status is None
    # The second try can only start once the first has timed out.
    assert outcome.elapsed >= TIMEOUT
    assert len(gw.received) == 2


async def test_every_try_resends_the_same_body_freshly_signed() -> None:
    async def never(seen: Received) -> Response:
        await asyncio.sleep(SLOW)
        return PlainTextResponse("success")

    async with gateway(never) as (url, gw):
        outcome = await sim_for(url).send_text(USER, "q")
    assert (outcome.kind, outcome.text, outcome.tries) == ("error", SERVICE_UNAVAILABLE, 3)
    assert [a.error for a in outcome.raw] == ["timeout"] * 3
    assert len(gw.received) == 3
    assert len({r.body for r in gw.received}) == 1
    assert len({r.params["nonce"] for r in gw.received}) == 3
    for r in gw.received:
        assert r.params["signature"] == sha1_of(TOKEN, r.params["timestamp"], r.params["nonce"])


async def test_tries_is_configurable() -> None:
    async def never(seen: Received) -> Response:
        await asyncio.sleep(SLOW)
        return PlainTextResponse("success")

    async with gateway(never) as (url, gw):
        outcome = await sim_for(url, tries=1).send_text(USER, "q")
    assert (outcome.kind, outcome.tries, len(gw.received)) == ("error", 1, 1)


async def test_success_and_an_empty_body_mean_no_reply() -> None:
    for body in ("success", ""):

        async def answer(seen: Received, body: str = body) -> Response:
            return PlainTextResponse(body)

        async with gateway(answer) as (url, _):
            outcome = await sim_for(url).send_text(USER, "q")
        assert (outcome.kind, outcome.text, outcome.tries) == ("nothing", None, 1)


async def test_a_json_body_shows_the_service_error() -> None:
    async def json_answer(seen: Received) -> Response:
        return JSONResponse({"reply": "hi"})

    async with gateway(json_answer) as (url, _):
        outcome = await sim_for(url).send_text(USER, "q")
    assert (outcome.kind, outcome.text, outcome.tries) == ("error", SERVICE_UNAVAILABLE, 1)
    assert json.loads(outcome.raw[0].body or "") == {"reply": "hi"}


async def test_a_server_error_shows_the_service_error_without_retrying() -> None:
    async def broken(seen: Received) -> Response:
        return PlainTextResponse("boom", status_code=500)

    async with gateway(broken) as (url, gw):
        outcome = await sim_for(url).send_text(USER, "q")
    assert (outcome.kind, outcome.tries, outcome.reason) == ("error", 1, "HTTP 500")
    assert len(gw.received) == 1


async def test_a_reply_addressed_the_wrong_way_round_is_refused() -> None:
    async def swapped(seen: Received) -> Response:
        return xml_response(text_reply("hi", to=ACCOUNT, sender=USER))

    async with gateway(swapped) as (url, _):
        outcome = await sim_for(url).send_text(USER, "q")
    assert outcome.kind == "error"
    assert "ToUserName" in outcome.reason


async def test_a_text_reply_over_2048_bytes_is_refused() -> None:
    async def sized(seen: Received) -> Response:
        size = int(fields_of(seen.body)["Content"])
        return xml_response(text_reply("字" * (size // 3) + "x" * (size % 3)))

    async with gateway(sized) as (url, _):
        sim = sim_for(url)
        at_limit = await sim.send_text(USER, "2048")
        over = await sim.send_text(USER, "2049")
    assert at_limit.kind == "reply"
    assert (over.kind, over.text) == ("error", SERVICE_UNAVAILABLE)


async def test_an_image_reply_is_described() -> None:
    async def image(seen: Received) -> Response:
        return xml_response(
            f"<xml><ToUserName>{USER}</ToUserName><FromUserName>{ACCOUNT}</FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType>image</MsgType>"
            "<Image><MediaId>m123</MediaId></Image></xml>"
        )

    async with gateway(image) as (url, _):
        outcome = await sim_for(url).send_text(USER, "q")
    assert (outcome.kind, outcome.text) == ("reply", "[image m123]")


async def test_events_carry_no_msg_id() -> None:
    async def ok(seen: Received) -> Response:
        return PlainTextResponse("success")

    async with gateway(ok) as (url, gw):
        outcome = await sim_for(url).send_event(USER, "CLICK", "menu_1")
    message = fields_of(gw.received[0].body)
    assert (message["MsgType"], message["Event"], message["EventKey"]) == (
        "event",
        "CLICK",
        "menu_1",
    )
    assert "MsgId" not in message
    assert outcome.msg_id is None


async def test_a_voice_message_carries_its_fields() -> None:
    async with gateway(echo_recognition) as (url, gw):
        fields = {"MediaId": "v1", "Format": "amr", "Recognition": "语音文字"}
        outcome = await sim_for(url).send_message(USER, "voice", fields)
    message = fields_of(gw.received[0].body)
    assert message["MsgType"] == "voice"
    assert message["MsgId"] == outcome.msg_id
    assert outcome.text == "heard: 语音文字"


async def echo_recognition(seen: Received) -> Response:
    return xml_response(text_reply("heard: " + fields_of(seen.body)["Recognition"]))


async def test_an_unreachable_gateway_fails_every_try() -> None:
    async with gateway(echo) as (url, _):
        pass  # the port is closed once the block ends
    outcome = await sim_for(url).send_text(USER, "q")
    assert (outcome.kind, outcome.tries) == ("error", 3)
    assert all(a.error and "ConnectError" in a.error for a in outcome.raw)


async def test_verify_url_passes_only_when_echostr_comes_back() -> None:
    async def handshake(seen: Received) -> Response:
        p = seen.params
        if p["signature"] != sha1_of(TOKEN, p["timestamp"], p["nonce"]):
            return PlainTextResponse("bad signature", status_code=403)
        return PlainTextResponse(p["echostr"])

    async def wrong(seen: Received) -> Response:
        return PlainTextResponse("hello")

    async with gateway(handshake) as (good_url, _), gateway(wrong) as (bad_url, _):
        assert await sim_for(good_url).verify_url() is True
        assert await WeChatSim(good_url, "other-token", timeout=TIMEOUT).verify_url() is False
        assert await sim_for(bad_url).verify_url() is False


def wechatpy_gateway(reply_encrypted: bool) -> Handler:
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)

    async def handle(seen: Received) -> Response:
        p = seen.params
        assert p["encrypt_type"] == "aes"
        assert p["signature"] == sha1_of(TOKEN, p["timestamp"], p["nonce"])
        # wechatpy checks msg_signature against the Encrypt element and decrypts.
        xml = crypto.decrypt_message(seen.body, p["msg_signature"], p["timestamp"], p["nonce"])
        reply = text_reply("got " + fields_of(xml)["Content"])
        if reply_encrypted:
            reply = crypto.encrypt_message(reply, p["nonce"], p["timestamp"])
        return xml_response(reply)

    return handle


async def test_safe_mode_round_trip_with_an_independent_crypto() -> None:
    handle = wechatpy_gateway(reply_encrypted=True)
    async with gateway(handle) as (url, gw):
        sim = sim_for(url, aes_key=AES_KEY, appid=APPID)
        outcome = await sim.send_text(USER, "机密")
    assert (outcome.kind, outcome.text, outcome.tries) == ("reply", "got 机密", 1)
    body = fields_of(gw.received[0].body)
    assert set(body) == {"ToUserName", "Encrypt"}  # safe mode: no plaintext fields
    assert sim.sent[0].xml and "机密" in sim.sent[0].xml


async def test_safe_mode_refuses_a_plaintext_reply() -> None:
    handle = wechatpy_gateway(reply_encrypted=False)
    async with gateway(handle) as (url, _):
        outcome = await sim_for(url, aes_key=AES_KEY, appid=APPID).send_text(USER, "q")
    assert outcome.kind == "error"
    assert "encrypted" in outcome.reason


async def test_compat_mode_sends_both_forms_and_accepts_a_plaintext_reply() -> None:
    handle = wechatpy_gateway(reply_encrypted=False)
    async with gateway(handle) as (url, gw):
        sim = sim_for(url, aes_key=AES_KEY, appid=APPID, encrypt_mode="compat")
        outcome = await sim.send_text(USER, "兼容")
    assert (outcome.kind, outcome.text) == ("reply", "got 兼容")
    body = fields_of(gw.received[0].body)
    assert body["Content"] == "兼容"
    assert body["Encrypt"]


async def test_an_encrypted_reply_with_a_bad_signature_is_refused() -> None:
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)

    async def forged(seen: Received) -> Response:
        sealed = crypto.encrypt_message(text_reply("hi"), "123", "1700000000")
        return xml_response(sealed.replace("<Nonce><![CDATA[123]]>", "<Nonce><![CDATA[124]]>"))

    async with gateway(forged) as (url, _):
        outcome = await sim_for(url, aes_key=AES_KEY, appid=APPID).send_text(USER, "q")
    assert (outcome.kind, outcome.text) == ("error", SERVICE_UNAVAILABLE)
    assert "MsgSignature" in outcome.reason


async def test_retries_of_an_encrypted_message_are_signed_afresh() -> None:
    async def never(seen: Received) -> Response:
        await asyncio.sleep(SLOW)
        return PlainTextResponse("success")

    async with gateway(never) as (url, gw):
        await sim_for(url, aes_key=AES_KEY, appid=APPID).send_text(USER, "q")
    assert len({r.body for r in gw.received}) == 1
    for r in gw.received:
        p = r.params
        encrypted = fields_of(r.body)["Encrypt"]
        assert p["msg_signature"] == sha1_of(TOKEN, p["timestamp"], p["nonce"], encrypted)
    assert len({r.params["msg_signature"] for r in gw.received}) == 3


async def test_a_shared_client_is_used_and_left_open() -> None:
    async with gateway(echo) as (url, _), httpx.AsyncClient() as client:
        sim = sim_for(url, client=client)
        outcome = await sim.send_text(USER, "a")
        assert not client.is_closed
    assert outcome.text == "echo: a"
