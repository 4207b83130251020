"""Replies go through the sessionWebhook while it is valid, else through the OpenAPI."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from chatgate.channels.dingtalk.inbound import ReplyAddress
from chatgate.channels.dingtalk.openapi import OpenApi
from chatgate.channels.dingtalk.webhook import Replier, title_for
from chatgate.core.outbox import SendFailed
from chatgate.store.memory import MemoryStore

HOOK = "https://oapi.example/robot/sendBySession?session=s1"
NOW = 1_700_000_000.0


@dataclass
class Platform:
    """Webhook answers scripted per call; the OpenAPI always accepts."""

    webhook_answers: list[httpx.Response | Exception] = field(default_factory=list)
    webhook_posts: list[dict[str, object]] = field(default_factory=list)
    api_posts: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/robot/sendBySession":
            self.webhook_posts.append(json.loads(request.content))
            answer = self.webhook_answers.pop(0) if self.webhook_answers else None
            if isinstance(answer, Exception):
                raise answer
            return answer or httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})
        if request.url.path.endswith("accessToken"):
            return httpx.Response(200, json={"accessToken": "t", "expireIn": 7200})
        self.api_posts.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={})


@pytest.fixture
async def platform_and_replier() -> AsyncIterator[tuple[Platform, Replier]]:
    platform = Platform()
    store = MemoryStore()
    http = httpx.AsyncClient(transport=httpx.MockTransport(platform))
    openapi = OpenApi(http, store, base="https://api.example", client_id="a", client_secret="s")
    yield platform, Replier(http, openapi, clock=lambda: NOW)
    await http.aclose()


def address(*, group: bool = False, expires: float = NOW + 3600, staff: str = "u1") -> ReplyAddress:
    return ReplyAddress("2" if group else "1", "cid1", staff, "robot", HOOK, expires)


async def test_a_valid_webhook_gets_the_markdown_and_no_openapi_call(
    platform_and_replier: tuple[Platform, Replier],
) -> None:
    platform, replier = platform_and_replier
    assert await replier.send(address(), "# 标题\n\n正文") == "webhook"
    assert platform.webhook_posts == [
        {"msgtype": "markdown", "markdown": {"title": "标题", "text": "# 标题\n\n正文"}}
    ]
    assert platform.api_posts == []


@pytest.mark.parametrize("group", [False, True], ids=["single", "group"])
async def test_300001_falls_back_to_the_openapi_and_the_webhook_is_not_tried_again(
    platform_and_replier: tuple[Platform, Replier], group: bool
) -> None:
    platform, replier = platform_and_replier
    platform.webhook_answers = [httpx.Response(200, json={"errcode": 300001, "errmsg": "gone"})]
    assert await replier.send(address(group=group), "第一段") == "openapi"
    assert await replier.send(address(group=group), "第二段") == "openapi"
    assert len(platform.webhook_posts) == 1
    paths = [path for path, _ in platform.api_posts]
    expected = "groupMessages/send" if group else "oToMessages/batchSend"
    assert all(path.endswith(expected) for path in paths) and len(paths) == 2


async def test_a_webhook_past_its_expiry_is_skipped(
    platform_and_replier: tuple[Platform, Replier],
) -> None:
    platform, replier = platform_and_replier
    assert await replier.send(address(expires=NOW + 10), "晚了") == "openapi"
    assert platform.webhook_posts == []


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("down"), httpx.Response(200, json={"errcode": 130101, "errmsg": "busy"})],
    ids=["unreachable", "other-errcode"],
)
async def test_other_webhook_failures_fall_back_too(
    platform_and_replier: tuple[Platform, Replier], failure: httpx.Response | Exception
) -> None:
    platform, replier = platform_and_replier
    platform.webhook_answers = [failure]
    assert await replier.send(address(), "内容") == "openapi"
    assert len(platform.api_posts) == 1


async def test_an_outside_user_cannot_be_reached_once_the_webhook_is_gone(
    platform_and_replier: tuple[Platform, Replier],
) -> None:
    _, replier = platform_and_replier
    with pytest.raises(SendFailed, match="staff id"):
        await replier.send(address(expires=NOW - 1, staff=""), "内容")


def test_titles_are_the_first_line_as_plain_text_and_short() -> None:
    assert title_for("## 量子计算\n\n正文") == "量子计算"
    long = title_for("**注意：** 这是一段很长很长很长很长很长很长很长很长的文字")
    assert long.startswith("注意： 这是一段") and long.endswith("…") and len(long) == 24
    assert title_for("   ") == "回复"
