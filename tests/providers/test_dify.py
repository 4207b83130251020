"""DifyProvider against a mocked Dify server (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from chatgate.errors import ProviderError, ProviderTimeout
from chatgate.providers.base import ChatMessage, ChatRequest, ImagePart, Provider
from chatgate.providers.dify import DifyProvider, chat_messages_url, sse_events
from chatgate.providers.retry import RetryPolicy

API_KEY = "app-test5ecretKey0123456789"
BASE_URL = "https://dify.example.test/v1"
CONV = "45701982-8118-4bc5-8e9b-64562b4555f2"
SSE_HEADERS = {"content-type": "text/event-stream"}


def event(kind: str, **fields: Any) -> bytes:
    return f"data: {json.dumps({'event': kind, **fields}, ensure_ascii=False)}\n\n".encode()


def message(text: str, conversation: str = CONV) -> bytes:
    return event("message", answer=text, conversation_id=conversation, message_id="m1")


def end(conversation: str = CONV) -> bytes:
    return event("message_end", conversation_id=conversation, metadata={"usage": {}})


def sse(*texts: str, conversation: str = CONV) -> httpx.Response:
    body = (
        b"event: ping\n\n" + b"".join(message(t, conversation) for t in texts) + end(conversation)
    )
    return httpx.Response(200, headers=SSE_HEADERS, content=body)


def dify_error(status: int, code: str, text: str, **headers: str) -> httpx.Response:
    body = {"code": code, "message": text, "status": status}
    return httpx.Response(status, json=body, headers=headers)


class Stalling(httpx.AsyncByteStream):
    """A response body that sends ``first`` and then never another byte."""

    def __init__(self, first: bytes = b"") -> None:
        self.first = first

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.first:
            yield self.first
        await asyncio.Event().wait()


@dataclass
class Server:
    """Answers requests with the given responses in turn; the last one repeats."""

    responses: list[httpx.Response | Exception]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self.responses[min(len(self.requests), len(self.responses)) - 1]
        if isinstance(response, Exception):
            raise response
        return httpx.Response(
            response.status_code, headers=response.headers, stream=response.stream
        )

    def body(self, index: int = -1) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.requests[index].content)
        return data


def make(server: Server, *, timeout: float = 5.0, max_retries: int = 2) -> DifyProvider:
    client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    provider = DifyProvider(
        BASE_URL, API_KEY, timeout=timeout, http_client=client, max_retries=max_retries
    )
    # Keep retries instant; the pauses themselves are tested in test_retry.py.
    provider.retry_policy = RetryPolicy(max_retries=max_retries, base_delay=0.0)
    return provider


def ask(text: str = "你好", *, state: dict[str, str] | None = None) -> ChatRequest:
    return ChatRequest(
        messages=[
            ChatMessage("system", "be brief"),
            ChatMessage("user", "earlier question"),
            ChatMessage("assistant", "earlier answer"),
            ChatMessage("user", text),
        ],
        user="pseudonym-1",
        conversation="wechat_mp:gh:u1",
        request_id="answer-42",
        state={} if state is None else state,
    )


async def collect(provider: DifyProvider, request: ChatRequest) -> str:
    return "".join([chunk async for chunk in provider.stream(request)])


def test_the_provider_satisfies_the_protocol() -> None:
    assert isinstance(make(Server([sse("x")])), Provider)


@pytest.mark.parametrize(
    "base",
    ["https://api.dify.ai/v1", "https://api.dify.ai/v1/", "https://api.dify.ai", "http://h:5001/"],
)
def test_the_endpoint_is_found_with_or_without_v1(base: str) -> None:
    assert chat_messages_url(base).endswith("/v1/chat-messages")
    assert "/v1/v1" not in chat_messages_url(base)


async def test_streams_the_answer_and_sends_only_the_new_question() -> None:
    server = Server([sse("你", "好！")])
    request = ask("新问题")
    assert await collect(make(server), request) == "你好！"
    sent = server.requests[0]
    assert str(sent.url) == "https://dify.example.test/v1/chat-messages"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert server.body() == {
        "inputs": {},
        "query": "新问题",
        "response_mode": "streaming",
        "user": "pseudonym-1",
    }
    assert request.state == {"conversation_id": CONV}


async def test_a_known_conversation_id_is_sent_back() -> None:
    server = Server([sse("ok")])
    request = ask(state={"conversation_id": CONV})
    await collect(make(server), request)
    assert server.body()["conversation_id"] == CONV


async def test_agent_messages_count_and_other_events_are_ignored() -> None:
    body = (
        event("workflow_started", data={})
        + event("agent_thought", thought="thinking…", conversation_id=CONV)
        + event("agent_message", answer="A", conversation_id=CONV)
        + b": a comment line\n\n"
        + event("message_file", url="https://x/y.png", conversation_id=CONV)
        + event("agent_message", answer="B", conversation_id=CONV)
        + end()
    )
    server = Server([httpx.Response(200, headers=SSE_HEADERS, content=body)])
    assert await collect(make(server), ask()) == "AB"


async def test_images_go_as_remote_url_files() -> None:
    server = Server([sse("ok")])
    request = ask()
    request.messages = [ChatMessage("user", "看图", (ImagePart("https://img/1.jpg"),))]
    await collect(make(server), request)
    assert server.body()["files"] == [
        {"type": "image", "transfer_method": "remote_url", "url": "https://img/1.jpg"}
    ]


async def test_429_is_retried_honouring_retry_after_then_answers() -> None:
    server = Server(
        [dify_error(429, "too_many_requests", "slow down", **{"retry-after": "0"}), sse("ok")]
    )
    assert await collect(make(server), ask()) == "ok"
    assert len(server.requests) == 2


async def test_retries_are_bounded_and_the_last_error_is_raised() -> None:
    server = Server([dify_error(503, "unavailable", "busy")])
    with pytest.raises(ProviderError) as caught:
        await collect(make(server, max_retries=2), ask())
    assert len(server.requests) == 3
    assert caught.value.retryable and caught.value.status == 503
    assert "unavailable: busy" in str(caught.value)


async def test_a_client_error_is_not_retried_and_names_dify_s_code() -> None:
    server = Server([dify_error(400, "app_unavailable", "App unavailable, please check")])
    with pytest.raises(ProviderError) as caught:
        await collect(make(server), ask())
    assert len(server.requests) == 1
    assert not caught.value.retryable and caught.value.status == 400
    assert "dify.example.test" in str(caught.value) and "app_unavailable" in str(caught.value)


async def test_the_api_key_never_appears_in_an_error() -> None:
    server = Server([dify_error(401, "unauthorized", f"Access token {API_KEY} is invalid")])
    with pytest.raises(ProviderError) as caught:
        await collect(make(server), ask())
    assert API_KEY not in str(caught.value) and "app-test5" not in str(caught.value)


async def test_a_lost_conversation_is_dropped_and_the_question_asked_afresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone = dify_error(404, "not_found", "Conversation Not Exists.")
    server = Server([gone, sse("fresh", conversation="new-conv")])
    request = ask(state={"conversation_id": "stale-conv"})
    # Asking afresh is not a retry: it happens even with retries off.
    with caplog.at_level(logging.WARNING, "chatgate.providers.dify"):
        assert await collect(make(server, max_retries=0), request) == "fresh"
    assert server.body(0)["conversation_id"] == "stale-conv"
    assert "conversation_id" not in server.body(1)
    assert request.state == {"conversation_id": "new-conv"}
    assert "answer-42" in caplog.text and "stale-conv" in caplog.text


async def test_a_404_without_a_conversation_is_an_error_not_a_loop() -> None:
    server = Server([dify_error(404, "not_found", "Conversation Not Exists.")])
    request = ask(state={"conversation_id": "stale-conv"})
    with pytest.raises(ProviderError) as caught:
        await collect(make(server), request)
    assert len(server.requests) == 2  # once with the stale id, once afresh, then give up
    assert caught.value.status == 404 and request.state == {}


async def test_an_error_event_before_any_text_is_retried_when_retryable() -> None:
    failing = event("error", status=429, code="rate_limit", message="quota", message_id="m")
    server = Server([httpx.Response(200, headers=SSE_HEADERS, content=failing), sse("ok")])
    assert await collect(make(server), ask()) == "ok"
    assert len(server.requests) == 2


async def test_an_error_event_after_text_ends_the_answer_without_retry() -> None:
    body = message("half") + event("error", status=500, code="internal", message="model died")
    server = Server([httpx.Response(200, headers=SSE_HEADERS, content=body)])
    shown: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in make(server).stream(ask()):
            shown.append(chunk)
    assert shown == ["half"] and len(server.requests) == 1
    assert "internal: model died" in str(caught.value)


async def test_a_stream_cut_before_message_end_fails_the_answer() -> None:
    server = Server([httpx.Response(200, headers=SSE_HEADERS, content=message("half"))])
    shown: list[str] = []
    with pytest.raises(ProviderError, match="before message_end"):
        async for chunk in make(server).stream(ask()):
            shown.append(chunk)
    assert shown == ["half"] and len(server.requests) == 1


async def test_a_conversation_id_seen_before_a_failure_is_kept() -> None:
    body = message("half", conversation="kept-conv")
    server = Server([httpx.Response(200, headers=SSE_HEADERS, content=body)])
    request = ask()
    with pytest.raises(ProviderError):
        await collect(make(server), request)
    assert request.state == {"conversation_id": "kept-conv"}


async def test_moderation_replacement_is_the_answer_when_nothing_was_shown() -> None:
    body = event("message_replace", answer="抱歉，这个问题不能回答。", conversation_id=CONV) + end()
    server = Server([httpx.Response(200, headers=SSE_HEADERS, content=body)])
    assert await collect(make(server), ask()) == "抱歉，这个问题不能回答。"


async def test_moderation_replacement_after_text_fails_the_answer() -> None:
    body = message("bad start") + event("message_replace", answer="preset") + end()
    server = Server([httpx.Response(200, headers=SSE_HEADERS, content=body)])
    with pytest.raises(ProviderError, match="moderation"):
        await collect(make(server), ask())


async def test_connection_errors_are_retried_then_reported() -> None:
    server = Server([httpx.ConnectError("connection refused")])
    with pytest.raises(ProviderError) as caught:
        await collect(make(server, max_retries=1), ask())
    assert len(server.requests) == 2
    assert caught.value.retryable and "cannot reach Dify" in str(caught.value)


async def test_a_stalled_stream_times_out_as_a_whole() -> None:
    server = Server([httpx.Response(200, headers=SSE_HEADERS, stream=Stalling(message("a")))])
    shown: list[str] = []
    with pytest.raises(ProviderTimeout):
        async for chunk in make(server, timeout=0.3).stream(ask()):
            shown.append(chunk)
    assert shown == ["a"]


async def test_aclose_leaves_a_given_client_open() -> None:
    client = httpx.AsyncClient(transport=httpx.MockTransport(Server([sse("x")])))
    await DifyProvider(BASE_URL, API_KEY, timeout=1, http_client=client).aclose()
    assert not client.is_closed
    await client.aclose()


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_sse_parser_joins_data_lines_and_names_events() -> None:
    stream = lines(
        "event: ping",
        "",
        'data: {"event": "message",',
        'data:  "answer": "x"}',
        "",
        "data: not json",
        "",
        ": keep-alive",
        "",
        'data: {"answer": "y"}',
        "",
    )
    events = [e async for e in sse_events(stream)]
    assert events == [
        {"event": "ping"},
        {"event": "message", "answer": "x"},
        {"event": "", "answer": "y"},
    ]


async def test_against_the_simulator_context_follows_the_kept_conversation_id() -> None:
    from chatgate.sim.llm import FakeLLM

    fake = FakeLLM(ttft=0.0)
    async with fake.serve() as base_url:
        provider = DifyProvider(base_url, "app-sim", timeout=5)
        state: dict[str, str] = {}
        assert (
            await collect(provider, ask("我叫小明", state=state))
            == "你问：我叫小明。这是模拟回答。"
        )
        assert await collect(provider, ask("我刚才说了什么？", state=state)) == "你刚才说：我叫小明"
        await provider.aclose()
    assert [call.body.get("conversation_id") for call in fake.calls] == [
        None,
        state["conversation_id"],
    ]
