"""Telemetry: the events an operator counts, as a protocol the core and channels call.

The core and the channels say what happened (a message arrived, a try came in, an answer
reached the user and how, an answer was lost, a model call ended); the app decides what to do
with it (``chatgate.app.metrics`` counts it for Prometheus). ``NO_TELEMETRY`` does nothing, so
code built without the app (unit tests, tools) needs no setup. Every method is cheap and must
never raise: a broken counter must not fail a message.

What counts as *lost* (``answer_lost``): an accepted message whose answer the gateway can no
longer give the user by any path — a job that expired before it finished, a try that finds
its message claimed but the answer record gone, a record that vanished while its job was
writing it, or a channel delivery given up with no fetchable copy left. An answer the user
was told about (placeholder, 「1」 notice, link) but never fetched is not lost: it was offered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from chatgate.errors import ProviderError, ProviderTimeout
from chatgate.providers.base import ChatRequest, Provider
from chatgate.store.base import AnswerKind, AnswerRecord

# How an answer (or one part of it) reached the user: ``inline_path(n)`` for the reply to the
# n-th try of its own message, or one of these.
PUSH = "push"  # sent by the channel's API (WeChat customer service, DingTalk)
FETCH = "fetch"  # the reply to the user's 「1」
PAGE = "page"  # read on the answer page

# Why an answer counts as lost (``answer_lost``'s ``reason``).
LOST_EXPIRED_UNFINISHED = "expired_unfinished"
LOST_RECORD_MISSING = "record_missing"
LOST_VANISHED = "vanished"
LOST_GIVEN_UP = "given_up"

_MAX_TRY_LABEL = 5


def inline_path(attempt: int) -> str:
    """The delivery path of an answer replied to the ``attempt``-th try of its message."""
    return f"inline_try_{attempt}"


def try_label(attempt: int) -> str:
    """The try number as a label, bounded so a misbehaving sender cannot grow the series."""
    return str(attempt) if attempt <= _MAX_TRY_LABEL else f"{_MAX_TRY_LABEL + 1}+"


def channel_of(conversation: str) -> str:
    """The channel of a conversation key (``"channel:account:user"``)."""
    return conversation.split(":", 1)[0]


def unseen(answer: AnswerRecord) -> bool:
    """Whether ``answer`` is a model answer none of which the user has seen yet.

    Deliveries are counted once per answer, by the path its first text took: later parts
    (「1」 for the rest, more pushes) are continuations, not deliveries.
    """
    return answer.kind is AnswerKind.LLM and answer.delivered_upto == 0


def error_code(exc: BaseException) -> str:
    """A short, bounded label for why a model call failed."""
    if isinstance(exc, ProviderTimeout | TimeoutError):
        return "timeout"
    if isinstance(exc, ProviderError):
        if exc.status is not None:
            return str(exc.status)
        return "unavailable" if exc.retryable else "error"
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "cancelled"
    return "unexpected"


class Telemetry(Protocol):
    """What the core and the channels report. See the module docstring for *lost*."""

    def message_received(self, channel: str, kind: str) -> None:
        """A new user message (its first try) was accepted; ``kind`` is ``Inbound.kind``."""

    def try_seen(self, channel: str, attempt: int) -> None:
        """A try of a message arrived; ``attempt`` is 1 for the first, 2 for a retry, …"""

    def delivered(self, channel: str, path: str) -> None:
        """A model answer first reached the user, by ``path`` (once per answer: ``unseen``)."""

    def deferred(self, channel: str) -> None:
        """A model answer was not ready on the message's last try: the user got the placeholder."""

    def answer_lost(self, channel: str, reason: str) -> None:
        """An accepted message's answer can no longer reach the user (must stay at zero)."""

    def llm_call(self, provider: str, seconds: float, error: str | None) -> None:
        """A model call ended after ``seconds``; ``error`` is ``None`` on success."""

    def llm_first_chunk(self, provider: str, seconds: float) -> None:
        """A model call produced its first text ``seconds`` after it started."""

    def platform_api_error(self, platform: str, code: str) -> None:
        """A platform API call (WeChat, DingTalk) failed with ``code`` (errcode or HTTP status)."""

    def token_refresh(self, platform: str) -> None:
        """A platform access token was fetched anew."""

    def webhook_refused(self, channel: str, reason: str) -> None:
        """A webhook request was refused (bad signature, malformed, draining, …)."""

    def track_jobs(self, queued: Callable[[], int], running: Callable[[], int]) -> None:
        """Where to read how many answer jobs wait and how many call the model right now."""


class NoTelemetry:
    """Telemetry that records nothing."""

    def message_received(self, channel: str, kind: str) -> None:
        pass

    def try_seen(self, channel: str, attempt: int) -> None:
        pass

    def delivered(self, channel: str, path: str) -> None:
        pass

    def deferred(self, channel: str) -> None:
        pass

    def answer_lost(self, channel: str, reason: str) -> None:
        pass

    def llm_call(self, provider: str, seconds: float, error: str | None) -> None:
        pass

    def llm_first_chunk(self, provider: str, seconds: float) -> None:
        pass

    def platform_api_error(self, platform: str, code: str) -> None:
        pass

    def token_refresh(self, platform: str) -> None:
        pass

    def webhook_refused(self, channel: str, reason: str) -> None:
        pass

    def track_jobs(self, queued: Callable[[], int], running: Callable[[], int]) -> None:
        pass


NO_TELEMETRY: Telemetry = NoTelemetry()


class MeteredProvider:
    """A provider that reports each call's duration, first chunk and outcome.

    Wrapping the provider (rather than timing inside the answer job) counts exactly the
    calls that reach the model, cache hits excluded, whichever provider is configured.
    ``in_flight`` is the number of calls streaming right now.
    """

    def __init__(
        self,
        inner: Provider,
        telemetry: Telemetry,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.in_flight = 0
        self._telemetry = telemetry
        self._clock = clock

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        started = self._clock()
        first = True
        error: str | None = None
        self.in_flight += 1
        try:
            async for chunk in self.inner.stream(request):
                if first and chunk:
                    first = False
                    self._telemetry.llm_first_chunk(self.name, self._clock() - started)
                yield chunk
        except BaseException as exc:
            error = error_code(exc)
            raise
        finally:
            self.in_flight -= 1
            self._telemetry.llm_call(self.name, self._clock() - started, error)

    async def aclose(self) -> None:
        await self.inner.aclose()
