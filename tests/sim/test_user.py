"""The terminal user: typed lines go to the gateway, and what WeChat shows comes back."""

from __future__ import annotations

import io

from starlette.responses import PlainTextResponse, Response

from chatgate.sim.user import run_terminal_user
from chatgate.sim.wechat import SERVICE_UNAVAILABLE, WeChatSim
from tests.sim.fake_gateway import (
    TOKEN,
    USER,
    Received,
    fields_of,
    gateway,
    text_reply,
    xml_response,
)


async def answer(seen: Received) -> Response:
    message = fields_of(seen.body)
    if message["MsgType"] == "event":
        return PlainTextResponse("success")
    if message["MsgType"] == "voice":
        return xml_response(text_reply("voice: " + message["Recognition"]))
    if message["Content"] == "break":
        return PlainTextResponse("oops", status_code=500)
    return xml_response(text_reply("你说：" + message["Content"]))


async def test_prints_replies_silence_and_errors_until_end_of_input() -> None:
    typed = io.StringIO("你好\n\n!event subscribe\n!voice 语音\nbreak\n")
    shown = io.StringIO()
    async with gateway(answer) as (url, gw):
        await run_terminal_user(WeChatSim(url, TOKEN, timeout=0.5), USER, typed, shown)
    out = shown.getvalue()
    assert "你说：你好" in out
    assert "(no reply)" in out
    assert "voice: 语音" in out
    assert SERVICE_UNAVAILABLE in out
    assert "1 try" in out
    assert [fields_of(r.body)["MsgType"] for r in gw.received] == ["text", "event", "voice", "text"]
    assert fields_of(gw.received[1].body)["Event"] == "subscribe"
