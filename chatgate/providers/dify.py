"""Dify chat apps (``POST /v1/chat-messages``), streamed; Dify keeps each conversation's history.

Dify stores a conversation's messages on its side under the ``conversation_id`` it issues with
the first answer. So this provider sends only the new question (``query``) — never the context
turns the core built, nor the system prompt: the Dify app defines its own prompt and memory —
and keeps the id in ``ChatRequest.state["conversation_id"]``. The answer job saves that state in
the store, so a conversation survives restarts; ``/new`` deletes it, so the next question starts
a new Dify conversation. ``user`` is the request's user (a pseudonym, never the platform's id).

Failure policy, the same as ``openai_compat``'s:
- the whole answer, retries included, must finish ``timeout`` seconds after ``stream`` is first
  iterated, else ``ProviderTimeout``;
- HTTP 408, 429, 5xx, connection errors and an ``error`` event with such a status are
  retryable, with ``retry.RetryPolicy``'s backoff (``Retry-After`` honoured), but only before
  the first chunk reached the user;
- a 404 for a conversation Dify no longer has (deleted in its console, say) drops the stale id
  and asks again once as a new conversation; that retry does not count against the policy;
- an ``error`` event after text was streamed, or a stream that ends without ``message_end``,
  fails the answer: the user keeps what was shown, followed by the apology;
- error messages name Dify's host, its error code and message, with the API key redacted.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import httpx

from chatgate.errors import ProviderError, ProviderTimeout
from chatgate.http_client import HttpClient
from chatgate.providers.base import ChatMessage, ChatRequest
from chatgate.providers.deadline import Deadline
from chatgate.providers.retry import RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

CONVERSATION_ID = "conversation_id"
_TEXT_EVENTS = frozenset({"message", "agent_message"})
_MAX_MESSAGE_CHARS = 400


def chat_messages_url(base_url: str) -> str:
    """The endpoint for a base URL given with or without Dify's ``/v1``."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/chat-messages"


class _AttemptFailed(Exception):
    """One HTTP request failed; the loop in ``stream`` decides whether to try again."""

    def __init__(
        self,
        error: ProviderError,
        *,
        retry_after: float | None = None,
        stale_conversation: bool = False,
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.stale_conversation = stale_conversation


class DifyProvider:
    """Streams answers from a Dify chat app (chatbot, agent or chatflow) at ``base_url``.

    ``api_key`` is the app's key (``app-…``). ``http_client`` is for tests and custom
    transports; when given, the caller owns it and ``aclose`` leaves it open. ``inputs`` are
    the app's input variables, sent with every question. ``retry_policy`` may be replaced
    after construction to tune backoff.
    """

    name: str = "dify"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float,
        http_client: httpx.AsyncClient | None = None,
        max_retries: int = 2,
        inputs: Mapping[str, str] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.url = chat_messages_url(base_url)
        self.timeout = timeout
        self.retry_policy = RetryPolicy(max_retries=max_retries)
        self._api_key = api_key
        self._inputs = dict(inputs or {})
        self._host = httpx.URL(self.url).host or "?"
        self._owns_client = http_client is None
        self._client = http_client or HttpClient(timeout=httpx.Timeout(timeout))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        query, images = _question(request.messages)
        policy = self.retry_policy
        retries = 0
        asked_afresh = False
        streamed = False
        while True:
            conversation_id = request.state.get(CONVERSATION_ID, "")
            body = self._body(query, images, request.user, conversation_id)
            try:
                async with aclosing(self._attempt(body, request, deadline)) as chunks:
                    async for text in chunks:
                        streamed = True
                        yield text
                return
            except _AttemptFailed as failed:
                error = failed.error
                if failed.stale_conversation and conversation_id and not asked_afresh:
                    # Dify lost the conversation: its context is gone either way; start anew.
                    request.state.pop(CONVERSATION_ID, None)
                    asked_afresh = True
                    log.warning(
                        "answer %s: Dify %s no longer has conversation %s; asking afresh",
                        request.request_id or "-",
                        self._host,
                        conversation_id,
                    )
                    continue
                if streamed or not error.retryable or retries >= policy.max_retries:
                    raise error from None
                wait = policy.delay(retries, failed.retry_after)
                if loop.time() + wait >= deadline:
                    raise error from None
                retries += 1
                log.warning(
                    "answer %s: %s; retry %d/%d in %.2fs",
                    request.request_id or "-",
                    error,
                    retries,
                    policy.max_retries,
                    wait,
                )
            # Outside the except block so a cancellation here does not chain the failure.
            await asyncio.sleep(wait)

    def _body(
        self, query: str, images: Sequence[str], user: str, conversation_id: str
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "inputs": self._inputs,
            "query": query,
            "response_mode": "streaming",
            # Dify requires a user; the job always passes a pseudonym, this is a fallback.
            "user": user or "chatgate",
        }
        if conversation_id:
            body[CONVERSATION_ID] = conversation_id
        if images:
            body["files"] = [
                {"type": "image", "transfer_method": "remote_url", "url": url} for url in images
            ]
        return body

    async def _attempt(
        self, body: dict[str, Any], request: ChatRequest, deadline: float
    ) -> AsyncGenerator[str, None]:
        """One HTTP request: yield its text; raise ``_AttemptFailed`` for any failure."""
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "text/event-stream"}
        try:
            async with self._until(deadline):
                http_request = self._client.build_request(
                    "POST", self.url, json=body, headers=headers
                )
                response = await self._client.send(http_request, stream=True)
        except httpx.TimeoutException:
            raise self._timed_out() from None
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        try:
            if response.status_code >= 400:
                async with self._until(deadline):
                    await response.aread()
                raise self._http_failure(response, bool(body.get(CONVERSATION_ID)))
            events = sse_events(response.aiter_lines())
            shown = False
            while True:
                try:
                    async with self._until(deadline):
                        event = await anext(events)
                except StopAsyncIteration:
                    raise _AttemptFailed(
                        ProviderError(
                            f"Dify ({self._host}) ended the stream before message_end",
                            retryable=True,
                        )
                    ) from None
                kind = event.get("event")
                conversation = event.get(CONVERSATION_ID)
                if isinstance(conversation, str) and conversation:
                    request.state[CONVERSATION_ID] = conversation
                if kind in _TEXT_EVENTS:
                    text = event.get("answer")
                    if isinstance(text, str) and text:
                        shown = True
                        yield text
                elif kind == "message_replace":
                    # Dify's output moderation swapped the answer for its preset reply.
                    text = event.get("answer")
                    if shown:
                        raise _AttemptFailed(
                            ProviderError(
                                f"Dify ({self._host}) moderation replaced an answer "
                                "already partly shown"
                            )
                        )
                    if isinstance(text, str) and text:
                        shown = True
                        yield text
                elif kind == "message_end":
                    return
                elif kind == "error":
                    raise self._event_failure(event, bool(body.get(CONVERSATION_ID)))
                # ping, workflow_*, node_*, agent_thought, message_file, tts_*: nothing to show.
        except httpx.TimeoutException:
            raise self._timed_out() from None
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        finally:
            await response.aclose()

    def _until(self, deadline: float) -> Deadline:
        return Deadline(deadline, self.timeout)

    def _timed_out(self) -> _AttemptFailed:
        return _AttemptFailed(ProviderTimeout(f"Dify ({self._host}): the request timed out"))

    def _unreachable(self, exc: httpx.TransportError) -> _AttemptFailed:
        message = self._clean(f"cannot reach Dify ({self._host}): {type(exc).__name__}: {exc}")
        return _AttemptFailed(ProviderError(message, retryable=True))

    def _http_failure(self, response: httpx.Response, sent_conversation: bool) -> _AttemptFailed:
        status = response.status_code
        code, detail = _error_fields(response.content)
        message = f"Dify ({self._host}) answered HTTP {status}" + _describe(code, detail)
        error = ProviderError(self._clean(message), retryable=_retryable(status), status=status)
        return _AttemptFailed(
            error,
            retry_after=parse_retry_after(response.headers),
            stale_conversation=sent_conversation and _conversation_gone(status, code, detail),
        )

    def _event_failure(self, event: Mapping[str, Any], sent_conversation: bool) -> _AttemptFailed:
        raw_status = event.get("status")
        status = raw_status if isinstance(raw_status, int) else None
        code, detail = _text(event, "code"), _text(event, "message")
        message = f"Dify ({self._host}) reported an error" + _describe(code, detail)
        retryable = status is not None and _retryable(status)
        error = ProviderError(self._clean(message), retryable=retryable, status=status)
        gone = status is not None and _conversation_gone(status, code, detail)
        return _AttemptFailed(error, stale_conversation=sent_conversation and gone)

    def _clean(self, message: str) -> str:
        """Redact the key, then shorten: in that order, so no prefix of the key survives."""
        if self._api_key:
            message = message.replace(self._api_key, "***")
        message = " ".join(message.split())
        if len(message) > _MAX_MESSAGE_CHARS:
            message = message[: _MAX_MESSAGE_CHARS - 1] + "…"
        return message


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of a server-sent event stream, in order.

    Dify names each event inside its JSON (``"event": "message"``), so the SSE ``event:``
    field only fills in a missing name (``event: ping``). Written by hand: it is these few
    lines over ``httpx``'s ``aiter_lines``, not worth a dependency.
    """
    data: list[str] = []
    name = ""
    async for line in lines:
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                data.append(value)
            elif field == "event":
                name = value
            continue
        payload, data, event_name, name = "\n".join(data), [], name, ""
        if not payload and not event_name:
            continue
        try:
            event = json.loads(payload) if payload else {}
        except ValueError:
            continue
        if isinstance(event, dict):
            event.setdefault("event", event_name)
            yield event


def _question(messages: Sequence[ChatMessage]) -> tuple[str, tuple[str, ...]]:
    """The new question and its image URLs: the last user message."""
    for message in reversed(messages):
        if message.role == "user":
            return message.content, tuple(image.url for image in message.images)
    return "", ()


def _retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


def _conversation_gone(status: int, code: str, detail: str) -> bool:
    # Dify answers {"code": "not_found", "message": "Conversation Not Exists.", "status": 404}.
    return status == 404 and (code == "not_found" or "conversation" in detail.lower())


def _error_fields(content: bytes) -> tuple[str, str]:
    """Dify's ``code`` and ``message`` from an error body; the raw text if it is not JSON."""
    try:
        body = json.loads(content)
    except ValueError:
        return "", content.decode("utf-8", errors="replace").strip()
    if not isinstance(body, dict):
        return "", ""
    return _text(body, "code"), _text(body, "message")


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _describe(code: str, detail: str) -> str:
    if code and detail:
        return f": {code}: {detail}"
    if code or detail:
        return f": {code or detail}"
    return ""
