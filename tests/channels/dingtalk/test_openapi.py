"""The OpenAPI client: one shared token in the store, retries that help, bodies as documented."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from chatgate.channels.dingtalk.inbound import ReplyAddress
from chatgate.channels.dingtalk.openapi import DingTalkApiError, OpenApi, token_key
from chatgate.store.memory import MemoryStore

BASE = "https://api.example"
TOKEN_PATH = "/v1.0/oauth2/accessToken"


class FakeDingTalk:
    """A MockTransport handler that issues tokens and answers calls from a script."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.tokens = 0
        self.valid: set[str] = set()
        self.replies: list[httpx.Response] = []  # served in order to non-token calls

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == TOKEN_PATH:
            self.tokens += 1
            token = f"tok{self.tokens}"
            self.valid.add(token)
            return httpx.Response(200, json={"accessToken": token, "expireIn": 7200})
        if request.headers.get("x-acs-dingtalk-access-token") not in self.valid:
            return httpx.Response(401, json={"code": "InvalidAuthentication", "message": "bad"})
        if self.replies:
            return self.replies.pop(0)
        return httpx.Response(200, json={"processQueryKey": "k"})

    def calls(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path != TOKEN_PATH]

    def body(self, index: int = -1) -> dict[str, Any]:
        return dict(json.loads(self.calls()[index].content))


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def fake() -> FakeDingTalk:
    return FakeDingTalk()


@pytest.fixture
def make_api(fake: FakeDingTalk, store: MemoryStore) -> Callable[..., OpenApi]:
    pauses: list[float] = []

    async def no_sleep(seconds: float) -> None:
        pauses.append(seconds)

    def make(**options: Any) -> OpenApi:
        http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
        return OpenApi(
            http, store, base=BASE, client_id="app", client_secret="s3", sleep=no_sleep, **options
        )

    make.pauses = pauses  # type: ignore[attr-defined]
    return make


async def test_the_token_is_fetched_once_and_shared_through_the_store(
    fake: FakeDingTalk, store: MemoryStore, make_api: Callable[..., OpenApi]
) -> None:
    first, second = make_api(), make_api()  # two processes sharing one store
    await first.send_to_group("robot", "cid1", "t", "a")
    await second.send_to_group("robot", "cid1", "t", "b")
    assert fake.tokens == 1
    assert await store.kv_get(token_key("app")) == "tok1"
    token_request = json.loads(fake.requests[0].content)
    assert token_request == {"appKey": "app", "appSecret": "s3"}


async def test_a_refused_token_is_dropped_and_the_call_made_once_more(
    fake: FakeDingTalk, store: MemoryStore, make_api: Callable[..., OpenApi]
) -> None:
    api = make_api()
    await api.send_to_group("robot", "cid1", "t", "a")
    fake.valid.clear()  # DingTalk revoked it early
    await api.send_to_group("robot", "cid1", "t", "b")
    assert fake.tokens == 2
    # The refused call was made again with the new token.
    assert [r.headers["x-acs-dingtalk-access-token"] for r in fake.calls()] == [
        "tok1",
        "tok1",
        "tok2",
    ]
    assert json.loads(fake.body()["msgParam"])["text"] == "b"
    assert await store.kv_get(token_key("app")) == "tok2"


async def test_throttling_and_server_errors_are_retried_after_a_pause(
    fake: FakeDingTalk, make_api: Callable[..., OpenApi]
) -> None:
    api = make_api()
    fake.replies = [
        httpx.Response(403, json={"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"}),
        httpx.Response(503, text="busy"),
    ]
    await api.send_to_group("robot", "cid1", "t", "a")
    assert len(fake.calls()) == 3
    assert make_api.pauses == [1.0, 2.0]  # type: ignore[attr-defined]


async def test_a_client_error_is_raised_at_once_with_dingtalks_code(
    fake: FakeDingTalk, make_api: Callable[..., OpenApi]
) -> None:
    api = make_api()
    fake.replies = [httpx.Response(400, json={"code": "invalidParameter.msgParam.tooLong"})]
    with pytest.raises(DingTalkApiError) as caught:
        await api.send_to_group("robot", "cid1", "t", "a")
    assert caught.value.code == "invalidParameter.msgParam.tooLong"
    assert caught.value.status == 400 and not caught.value.retryable
    assert len(fake.calls()) == 1


async def test_retries_give_up_after_the_limit(
    fake: FakeDingTalk, make_api: Callable[..., OpenApi]
) -> None:
    api = make_api(retries=2)
    fake.replies = [httpx.Response(500, text="down") for _ in range(5)]
    with pytest.raises(DingTalkApiError) as caught:
        await api.send_to_group("robot", "cid1", "t", "a")
    assert caught.value.retryable and len(fake.calls()) == 3


async def test_robot_messages_are_markdown_with_a_json_string_param(
    fake: FakeDingTalk, make_api: Callable[..., OpenApi]
) -> None:
    api = make_api()
    await api.send_to_users("robot", ["u1"], "标题", "**粗体**")
    await api.send_to_group("robot", "cidG", "标题", "群消息")
    single, group = fake.calls()
    assert single.url.path == "/v1.0/robot/oToMessages/batchSend"
    assert group.url.path == "/v1.0/robot/groupMessages/send"
    body = fake.body(0)
    assert body["robotCode"] == "robot" and body["userIds"] == ["u1"]
    assert body["msgKey"] == "sampleMarkdown"
    assert json.loads(body["msgParam"]) == {"title": "标题", "text": "**粗体**"}
    assert "**粗体**" in body["msgParam"]  # UTF-8, not \\u escapes: sizes are real bytes
    assert fake.body(1)["openConversationId"] == "cidG"


async def test_users_batch_send_refused_is_an_error(
    fake: FakeDingTalk, make_api: Callable[..., OpenApi]
) -> None:
    api = make_api()
    fake.replies = [httpx.Response(200, json={"invalidStaffIdList": ["ghost"]})]
    with pytest.raises(DingTalkApiError, match="ghost"):
        await api.send_to_users("robot", ["ghost"], "t", "x")


async def test_cards_are_delivered_to_the_right_space_and_streamed_whole(
    fake: FakeDingTalk, make_api: Callable[..., OpenApi]
) -> None:
    api = make_api()
    group = ReplyAddress("2", "cidG", "u1", "robot")
    single = ReplyAddress("1", "cidS", "u1", "robot")
    await api.create_card("tpl", "track-g", group, {"content": ""})
    await api.create_card("tpl", "track-s", single, {"content": ""})
    await api.stream_card("track-s", "content", "全文", finalize=True)
    g, s, update = fake.body(0), fake.body(1), fake.body(2)
    assert g["openSpaceId"] == "dtv1.card//IM_GROUP.cidG"
    assert g["imGroupOpenDeliverModel"] == {"robotCode": "robot"}
    assert s["openSpaceId"] == "dtv1.card//IM_ROBOT.u1"
    assert s["imRobotOpenDeliverModel"] == {"spaceType": "IM_ROBOT"}
    assert g["cardTemplateId"] == "tpl" and g["cardData"] == {"cardParamMap": {"content": ""}}
    assert fake.calls()[2].method == "PUT"
    assert update["isFull"] is True and update["isFinalize"] is True and not update["isError"]
    assert update["guid"] and update["content"] == "全文"
