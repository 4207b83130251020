"""Any OpenAI-compatible chat-completions endpoint (OpenAI, DeepSeek, Qwen, Ollama, vLLM), streamed.

Only ``delta.content`` (and ``delta.refusal``) reaches the user: role-only and empty deltas
are skipped, and DeepSeek-R1's ``reasoning_content`` (the model's hidden chain of thought)
is ignored on purpose — it is long, not meant for the user, and would blow WeChat's limits.

Failure policy, in one place:
- the whole answer, retries and their pauses included, must finish ``timeout`` seconds after
  ``stream`` is first iterated, else ``ProviderTimeout``; the HTTP response is closed on
  timeout, on cancellation and when the consumer stops early;
- 408, 429, 5xx and connection errors are retryable; other statuses are not;
- retries (``retry.RetryPolicy``) happen only before the first chunk was yielded, since a
  retry after that would show the user the start of the answer twice; the SDK's own retries
  are off so that this is the only retry loop;
- error messages name the endpoint's host and the server's message with the API key
  redacted, and SDK exceptions are not chained (they carry the request and its headers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import aclosing
from typing import Any, cast

import httpx
import openai
from openai import AsyncOpenAI
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionContentPartParam,
    ChatCompletionMessageParam,
)

from chatgate.errors import ProviderError, ProviderTimeout
from chatgate.providers.base import ChatMessage, ChatRequest
from chatgate.providers.deadline import Deadline
from chatgate.providers.retry import RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

# The SDK refuses to start without a key; keyless servers (Ollama, vLLM) ignore this one.
PLACEHOLDER_API_KEY = "sk-no-key-required"
_MAX_MESSAGE_CHARS = 400


class OpenAICompatProvider:
    """Streams chat completions from an OpenAI-compatible ``base_url`` (``…/v1``).

    ``http_client`` is for tests and custom transports; when given, the caller owns it and
    ``aclose`` leaves it open. ``extra_body`` is merged into every request's JSON (e.g.
    ``{"enable_thinking": False}`` for Qwen). ``retry_policy`` may be replaced after
    construction to tune backoff.
    """

    name: str = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        *,
        timeout: float,
        http_client: httpx.AsyncClient | None = None,
        max_retries: int = 2,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.model = model
        self.timeout = timeout
        self.retry_policy = RetryPolicy(max_retries=max_retries)
        self._extra_body = dict(extra_body) if extra_body else None
        self._api_key = api_key
        self._host = httpx.URL(base_url).host or "?"
        self._owns_client = http_client is None
        self._client = AsyncOpenAI(
            api_key=api_key or PLACEHOLDER_API_KEY,
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            # The SDK is typed for httpx2 but accepts an httpx.AsyncClient at run time.
            http_client=cast(Any, http_client),
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.close()

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        messages = [to_openai_message(message) for message in request.messages]
        policy = self.retry_policy
        retries = 0
        streamed = False
        while True:
            try:
                async with aclosing(self._attempt(messages, request.user, deadline)) as chunks:
                    async for text in chunks:
                        streamed = True
                        yield text
                return
            except ProviderError:
                raise
            except Exception as exc:
                error = self._translate(exc)
                if not _is_sdk_error(exc):
                    raise error from exc
                if streamed or not error.retryable or retries >= policy.max_retries:
                    raise error from None
                wait = policy.delay(retries, _retry_after(exc))
                if loop.time() + wait >= deadline:
                    raise error from None
                retries += 1
                log.warning(
                    "answer %s: model API %s: %s; retry %d/%d in %.2fs",
                    request.request_id or "-",
                    self._host,
                    error,
                    retries,
                    policy.max_retries,
                    wait,
                )
            # Outside the except block so a cancellation here does not chain the SDK error.
            await asyncio.sleep(wait)

    async def _attempt(
        self, messages: list[ChatCompletionMessageParam], user: str, deadline: float
    ) -> AsyncGenerator[str, None]:
        """One HTTP request: yield its text, raise SDK errors as they are."""
        # Deadlines guard each await rather than the whole generator: a timeout armed across
        # a ``yield`` would fire inside the consumer's code instead of here.
        async with self._until(deadline):
            stream = await self._client.chat.completions.create(
                model=self.model,
                messages=messages,
                stream=True,
                user=user or openai.omit,
                extra_body=self._extra_body,
            )
        try:
            while True:
                async with self._until(deadline):
                    try:
                        chunk = await stream.__anext__()
                    except StopAsyncIteration:
                        return
                for text in chunk_texts(chunk):
                    yield text
        finally:
            await stream.close()

    def _until(self, deadline: float) -> Deadline:
        return Deadline(deadline, self.timeout)

    def _translate(self, exc: Exception) -> ProviderError:
        where = f"model API ({self._host})"
        if isinstance(exc, openai.APITimeoutError):
            return ProviderTimeout(f"{where}: request timed out")
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            detail = _detail(exc.body)
            message = f"{where} answered HTTP {status}" + (f": {detail}" if detail else "")
            retryable = status in (408, 429) or status >= 500
            return ProviderError(self._clean(message), retryable=retryable, status=status)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            reason = f"{type(cause).__name__}: {cause}" if cause is not None else exc.message
            return ProviderError(self._clean(f"cannot reach {where}: {reason}"), retryable=True)
        if isinstance(exc, openai.APIError):
            # An error event inside a 200 stream: the server gave up on this request.
            detail = _detail(exc.body) or exc.message
            return ProviderError(self._clean(f"{where} reported an error: {detail}"))
        return ProviderError(f"unexpected {type(exc).__name__} from {where}")

    def _clean(self, message: str) -> str:
        """Redact the key, then shorten: in that order, so no prefix of the key survives."""
        if self._api_key:
            message = message.replace(self._api_key, "***")
        message = " ".join(message.split())
        if len(message) > _MAX_MESSAGE_CHARS:
            message = message[: _MAX_MESSAGE_CHARS - 1] + "…"
        return message


def to_openai_message(message: ChatMessage) -> ChatCompletionMessageParam:
    """Our message in the API's shape; content parts only for a user message with images."""
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    if not message.images:
        return {"role": "user", "content": message.content}
    parts: list[ChatCompletionContentPartParam] = []
    if message.content:
        parts.append({"type": "text", "text": message.content})
    parts.extend({"type": "image_url", "image_url": {"url": image.url}} for image in message.images)
    return {"role": "user", "content": parts}


def chunk_texts(chunk: ChatCompletionChunk) -> Iterator[str]:
    """The user-visible text of one streamed chunk; nothing for role-only or empty deltas."""
    # The SDK builds chunks without validation, and compatible servers omit fields freely.
    for choice in getattr(chunk, "choices", None) or ():
        delta = getattr(choice, "delta", None)
        for field in ("content", "refusal"):
            text = getattr(delta, field, None)
            if isinstance(text, str) and text:
                yield text


def _is_sdk_error(exc: Exception) -> bool:
    return isinstance(exc, openai.OpenAIError)


def _retry_after(exc: Exception) -> float | None:
    if isinstance(exc, openai.APIStatusError):
        return parse_retry_after(exc.response.headers)
    return None


def _detail(body: object) -> str:
    """The server's own error message; empty when it sent none."""
    text = ""
    if isinstance(body, Mapping):
        message = body.get("message")
        error = body.get("error")
        if not isinstance(message, str) and isinstance(error, Mapping):
            message = error.get("message")
        if isinstance(message, str):
            text = message
        elif isinstance(error, str):
            text = error
    elif isinstance(body, str):
        text = body
    return text
