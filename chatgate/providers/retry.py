"""When to retry a failed provider call and how long to wait first: the whole policy."""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter.

    Only the provider decides *whether* a failure may be retried (retryable, nothing streamed
    yet, time left); this says *how often* and *how long to wait*.
    """

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    # A server asking for a longer pause than this is not worth waiting for inside one answer.
    max_retry_after: float = 20.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")

    def delay(
        self,
        retry: int,
        retry_after: float | None = None,
        *,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry).

        A server's ``Retry-After`` wins over the computed backoff, capped at
        ``max_retry_after``. Otherwise the backoff doubles per retry up to ``max_delay`` and
        is shortened by up to ``jitter`` so that clients failing together do not retry in
        lockstep.
        """
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            return min(retry_after, self.max_retry_after)
        backoff = min(self.base_delay * 2.0 ** min(retry, 30), self.max_delay)
        return max(0.0, backoff * (1.0 - self.jitter * rand()))


def parse_retry_after(
    headers: Mapping[str, str], *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds a response asks us to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be seconds or an HTTP date. ``None`` when absent or unreadable.
    ``headers`` must look names up case-insensitively, as ``httpx.Headers`` does.
    """
    # retry-after-ms is OpenAI's finer-grained variant; prefer it when both are sent.
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            seconds = float(raw) / divisor
        except ValueError:
            continue
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # "-0000" parses to a naive datetime; HTTP dates are always UTC.
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())
