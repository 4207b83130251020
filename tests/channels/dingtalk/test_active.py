"""Speaking first on DingTalk: the OpenAPI, one call per message, long text cut like replies."""

from __future__ import annotations

import json

import httpx
import pytest

from chatgate.channels.dingtalk.active import DingTalkActiveSender
from chatgate.channels.dingtalk.openapi import OpenApi
from chatgate.core.delivery import Surface
from chatgate.core.outbox import Outbox, SendFailed, Target
from chatgate.core.splitting import utf8_len
from chatgate.store.memory import MemoryStore


async def test_long_text_to_a_user_goes_out_as_several_markdown_messages() -> None:
    posts: list[tuple[str, dict[str, object]]] = []

    def platform(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("accessToken"):
            return httpx.Response(200, json={"accessToken": "t", "expireIn": 7200})
        posts.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={})

    http = httpx.AsyncClient(transport=httpx.MockTransport(platform))
    openapi = OpenApi(http, MemoryStore(), base="https://api", client_id="a", client_secret="s")
    outbox = Outbox()
    outbox.register(DingTalkActiveSender(openapi, Surface(max_bytes=300)))
    text = "\n\n".join(f"第{i}条通知。" + "内容" * 20 for i in range(4))
    await outbox.send(Target("dingtalk", "robot", "u1"), text)
    await outbox.send(Target("dingtalk", "robot", "cidG", group=True), "群通知")
    users = [body for path, body in posts if path.endswith("batchSend")]
    groups = [body for path, body in posts if path.endswith("groupMessages/send")]
    shown = [json.loads(str(body["msgParam"]))["text"] for body in users]
    assert len(shown) >= 2 and all(utf8_len(t) <= 300 for t in shown)
    assert "\n\n".join(shown) == text
    assert all(body["userIds"] == ["u1"] and body["robotCode"] == "robot" for body in users)
    assert [g["openConversationId"] for g in groups] == ["cidG"]
    await http.aclose()


async def test_a_target_of_another_channel_is_refused() -> None:
    sender = DingTalkActiveSender(None, Surface(max_bytes=300))  # type: ignore[arg-type]
    with pytest.raises(SendFailed):
        await sender.send(Target("wechat_mp", "gh", "openid"), "hi")
