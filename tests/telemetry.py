"""A ``Telemetry`` that records every call, for tests that check what was reported."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any


class RecordingTelemetry:
    """Keeps each call as ``(method, args)``; ``count`` tallies them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.queued: Callable[[], int] = lambda: 0
        self.running: Callable[[], int] = lambda: 0

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def count(self, name: str) -> Counter[tuple[Any, ...]]:
        return Counter(args for method, args in self.calls if method == name)

    def message_received(self, channel: str, kind: str) -> None:
        self._record("message_received", channel, kind)

    def try_seen(self, channel: str, attempt: int) -> None:
        self._record("try_seen", channel, attempt)

    def delivered(self, channel: str, path: str) -> None:
        self._record("delivered", channel, path)

    def deferred(self, channel: str) -> None:
        self._record("deferred", channel)

    def answer_lost(self, channel: str, reason: str) -> None:
        self._record("answer_lost", channel, reason)

    def llm_call(self, provider: str, seconds: float, error: str | None) -> None:
        self._record("llm_call", provider, error)

    def llm_first_chunk(self, provider: str, seconds: float) -> None:
        self._record("llm_first_chunk", provider)

    def platform_api_error(self, platform: str, code: str) -> None:
        self._record("platform_api_error", platform, code)

    def token_refresh(self, platform: str) -> None:
        self._record("token_refresh", platform)

    def webhook_refused(self, channel: str, reason: str) -> None:
        self._record("webhook_refused", channel, reason)

    def track_jobs(self, queued: Callable[[], int], running: Callable[[], int]) -> None:
        self.queued, self.running = queued, running
