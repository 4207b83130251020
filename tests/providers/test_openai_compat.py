"""OpenAICompatProvider against a mocked OpenAI-compatible server (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from chatgate.errors import ProviderError, ProviderTimeout
from chatgate.providers.base import ChatMessage, ChatRequest, ImagePart, Provider
from chatgate.providers.openai_compat import PLACEHOLDER_API_KEY, OpenAICompatProvider
from chatgate.providers.retry import RetryPolicy

API_KEY = "sk-test-5ecret-key-0123456789"
BASE_URL = "https://llm.example.test/v1"

Handler = Callable[[httpx.Request], Any]


def chunk(content: str | None = None, *, role: str | None = None, **delta: Any) -> bytes:
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()


DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"content-type": "text/event-stream"}


def sse(*texts: str) -> httpx.Response:
    body = chunk("", role="assistant") + b"".join(chunk(t) for t in texts) + DONE
    return httpx.Response(200, headers=SSE_HEADERS, content=body)


def error(status: int, message: str = "nope", **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message}}, headers=headers)


class Stalling(httpx.AsyncByteStream):
    """A response body that sends ``first`` and then never another byte."""

    def __init__(self, first: bytes = b"") -> None:
        self.first = first
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.first:
            yield self.first
        await asyncio.Event().wait()

    async def aclose(self) -> None:
        self.closed = True


class Trickle(httpx.AsyncByteStream):
    """A body that never ends but keeps sending: only a whole-answer deadline stops it."""

    def __init__(self, every: float) -> None:
        self.every = every

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            yield chunk("x")
            await asyncio.sleep(self.every)


class Breaking(httpx.AsyncByteStream):
    """A body that sends ``first`` and then drops the connection."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        raise httpx.ReadError("connection reset by peer")


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
        # A fresh Response each time: one that was read already cannot be sent again.
        status, headers = response.status_code, response.headers
        return httpx.Response(status, headers=headers, stream=response.stream)

    def body(self, index: int = -1) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.requests[index].content)
        return data


def make(
    server: Handler,
    *,
    api_key: str = API_KEY,
    timeout: float = 5.0,
    max_retries: int = 2,
    **kwargs: Any,
) -> OpenAICompatProvider:
    client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    provider = OpenAICompatProvider(
        BASE_URL,
        api_key,
        "test-model",
        timeout=timeout,
        http_client=client,
        max_retries=max_retries,
        **kwargs,
    )
    # Keep retries instant; the pauses themselves are tested in test_retry.py.
    provider.retry_policy = RetryPolicy(max_retries=max_retries, base_delay=0.0)
    return provider


def ask(text: str = "你好", *, images: tuple[ImagePart, ...] = (), user: str = "u1") -> ChatRequest:
    return ChatRequest(
        messages=[
            ChatMessage("system", "be brief"),
            ChatMessage("user", text, images),
        ],
        user=user,
        conversation="c1",
    )


async def collect(provider: OpenAICompatProvider, request: ChatRequest | None = None) -> list[str]:
    return [text async for text in provider.stream(request or ask())]


async def collect_until_error(
    provider: OpenAICompatProvider,
) -> tuple[list[str], ProviderError]:
    got: list[str] = []
    with pytest.raises(ProviderError) as info:
        async for text in provider.stream(ask()):
            got.append(text)
    return got, info.value


# -- streaming --------------------------------------------------------------------------


async def test_chunks_arrive_in_order_and_join_to_the_content() -> None:
    server = Server([sse("床前", "明月光，", "疑是地上霜。")])
    got = await collect(make(server))
    assert got == ["床前", "明月光，", "疑是地上霜。"]
    assert "".join(got) == "床前明月光，疑是地上霜。"


async def test_role_only_empty_and_reasoning_deltas_are_skipped() -> None:
    body = (
        chunk(role="assistant")
        + chunk("")
        + chunk(None, reasoning_content="let me think…")
        + chunk("answer", reasoning_content="")
        + b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n'
        + DONE
    )
    server = Server([httpx.Response(200, headers=SSE_HEADERS, content=body)])
    assert await collect(make(server)) == ["answer"]


async def test_request_carries_model_messages_user_and_extra_body() -> None:
    server = Server([sse("ok")])
    provider = make(server, extra_body={"enable_thinking": False})
    await collect(provider, ask("hi", user="openid-42"))
    sent = server.body()
    assert str(server.requests[0].url) == f"{BASE_URL}/chat/completions"
    assert sent["model"] == "test-model"
    assert sent["stream"] is True
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert sent["user"] == "openid-42"
    assert sent["enable_thinking"] is False
    assert server.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


async def test_empty_user_is_not_sent() -> None:
    server = Server([sse("ok")])
    await collect(make(server), ask(user=""))
    assert "user" not in server.body()


async def test_empty_api_key_still_works_with_a_placeholder() -> None:
    server = Server([sse("ok")])
    assert await collect(make(server, api_key="")) == ["ok"]
    assert server.requests[0].headers["authorization"] == f"Bearer {PLACEHOLDER_API_KEY}"


async def test_images_become_vision_content_parts() -> None:
    server = Server([sse("a cat")])
    images = (ImagePart("https://img.example/1.jpg"), ImagePart("data:image/png;base64,AAAA"))
    await collect(make(server), ask("what is this?", images=images))
    assert server.body()["messages"][-1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "https://img.example/1.jpg"}},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ],
    }


async def test_provider_satisfies_the_protocol() -> None:
    assert isinstance(make(Server([sse("x")])), Provider)


# -- retries ----------------------------------------------------------------------------


async def test_429_then_200_streams_once_after_two_requests() -> None:
    server = Server([error(429, "slow down"), sse("hel", "lo")])
    assert await collect(make(server)) == ["hel", "lo"]
    assert len(server.requests) == 2


async def test_retry_after_sets_the_pause() -> None:
    @dataclass(frozen=True)
    class Recording(RetryPolicy):
        seen: list[float | None] = field(default_factory=list)

        def delay(self, retry: int, retry_after: float | None = None, **kw: Any) -> float:
            self.seen.append(retry_after)
            return 0.0

    server = Server([error(429, **{"retry-after": "3"}), error(503), sse("ok")])
    provider = make(server)
    policy = Recording(max_retries=2)
    provider.retry_policy = policy
    assert await collect(provider) == ["ok"]
    assert policy.seen == [3.0, None]


async def test_retry_after_beyond_the_deadline_fails_at_once() -> None:
    server = Server([error(429, "quota", **{"retry-after": "10"}), sse("late")])
    provider = make(server, timeout=1.0)
    _, err = await collect_until_error(provider)
    assert not isinstance(err, ProviderTimeout)
    assert err.status == 429 and err.retryable
    assert len(server.requests) == 1


async def test_persistent_500_exhausts_retries_with_a_retryable_error() -> None:
    server = Server([error(500, "boom")])
    _, err = await collect_until_error(make(server, max_retries=2))
    assert err.retryable
    assert err.status == 500
    assert "boom" in str(err)
    assert len(server.requests) == 3


async def test_zero_max_retries_means_one_request() -> None:
    server = Server([error(502)])
    await collect_until_error(make(server, max_retries=0))
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_are_not_retried(status: int) -> None:
    server = Server([error(status), sse("never")])
    _, err = await collect_until_error(make(server))
    assert not err.retryable
    assert err.status == status
    assert len(server.requests) == 1


async def test_connection_errors_are_retried_and_retryable() -> None:
    server = Server([httpx.ConnectError("connection refused")])
    _, err = await collect_until_error(make(server, max_retries=1))
    assert err.retryable
    assert err.status is None
    assert "connection refused" in str(err)
    assert len(server.requests) == 2


async def test_connection_error_then_success_recovers() -> None:
    server = Server([httpx.ConnectError("refused"), sse("ok")])
    assert await collect(make(server)) == ["ok"]


async def test_error_after_the_first_chunk_is_not_retried() -> None:
    broken = httpx.Response(200, headers=SSE_HEADERS, stream=Breaking(chunk("first")))
    server = Server([broken, sse("second", "attempt")])
    got, err = await collect_until_error(make(server))
    assert got == ["first"]
    assert err.retryable
    assert len(server.requests) == 1


async def test_error_event_inside_the_stream_is_a_provider_error() -> None:
    body = chunk("partial") + b'data: {"error": {"message": "model overloaded"}}\n\n'
    server = Server([httpx.Response(200, headers=SSE_HEADERS, content=body)])
    got, err = await collect_until_error(make(server))
    assert got == ["partial"]
    assert "model overloaded" in str(err)
    assert len(server.requests) == 1


async def test_malformed_stream_is_a_provider_error() -> None:
    body = b"data: {not json\n\n"
    server = Server([httpx.Response(200, headers=SSE_HEADERS, content=body)])
    _, err = await collect_until_error(make(server))
    assert not err.retryable


# -- timeouts and closing ---------------------------------------------------------------


async def test_stalled_stream_times_out_and_closes_the_response() -> None:
    body = Stalling(first=chunk("almost"))
    server = Server([httpx.Response(200, headers=SSE_HEADERS, stream=body)])
    got, err = await collect_until_error(make(server, timeout=0.2))
    assert isinstance(err, ProviderTimeout)
    assert got == ["almost"]
    assert body.closed
    assert len(server.requests) == 1


async def test_stall_before_any_text_times_out() -> None:
    body = Stalling()
    server = Server([httpx.Response(200, headers=SSE_HEADERS, stream=body)])
    _, err = await collect_until_error(make(server, timeout=0.2))
    assert isinstance(err, ProviderTimeout)
    assert body.closed


async def test_timeout_bounds_the_whole_answer_not_each_read() -> None:
    server = Server([httpx.Response(200, headers=SSE_HEADERS, stream=Trickle(every=0.01))])
    got, err = await collect_until_error(make(server, timeout=0.3))
    assert isinstance(err, ProviderTimeout)
    assert got  # text kept flowing; no single read was slow


async def test_stopping_early_closes_the_response() -> None:
    body = Stalling(first=chunk("one"))
    server = Server([httpx.Response(200, headers=SSE_HEADERS, stream=body)])
    stream = make(server).stream(ask())
    assert await anext(stream) == "one"
    await stream.aclose()  # type: ignore[attr-defined]
    assert body.closed


async def test_cancellation_closes_the_response() -> None:
    body = Stalling(first=chunk("one"))
    server = Server([httpx.Response(200, headers=SSE_HEADERS, stream=body)])
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in make(server, timeout=30).stream(ask()):
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert body.closed


# -- secrets and ownership --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, f"Incorrect API key provided: {API_KEY}."),
        # Repeated, so that shortening a long message cuts through one copy of the key.
        (500, f"{API_KEY} " * 40),
        (500, "x" + f"{API_KEY} " * 40),
        (429, f"Rate limit reached for key {API_KEY}"),
    ],
    ids=["401-echoed", "500-long", "500-long-shifted", "429-echoed"],
)
async def test_api_key_never_appears_in_errors(status: int, message: str) -> None:
    server = Server([error(status, message)])
    _, err = await collect_until_error(make(server))
    assert API_KEY not in str(err)
    assert API_KEY not in repr(err)
    assert API_KEY[:12] not in "".join(traceback.format_exception(err))


async def test_aclose_leaves_an_injected_client_open() -> None:
    client = httpx.AsyncClient(transport=httpx.MockTransport(Server([sse("ok")])))
    provider = OpenAICompatProvider(BASE_URL, API_KEY, "m", timeout=5, http_client=client)
    await provider.aclose()
    assert not client.is_closed
    await client.aclose()
