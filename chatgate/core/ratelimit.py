"""Per-user rate limits on questions for the model (``CHATGATE_RATE_LIMIT``, e.g. 20/min,200/day).

Counted with the store's ``incr`` in fixed windows (minute, hour, UTC day… as the limit says),
so every instance sharing the store shares the counts. Only messages that would call the
model count: commands, keyword replies, 「1」 and refused questions are free.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chatgate.core.decisions import Ask, Handler, HandlerResult, Reply
from chatgate.core.messages import Inbound
from chatgate.core.texts import Texts
from chatgate.store.base import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` questions per window of ``per`` seconds."""

    count: int
    per: float


def counter_key(conversation: str, limit: Limit, window: int) -> str:
    return f"rate:{conversation}:{limit.per:g}:{window}"


class RateLimiter:
    """Counts a conversation's questions against every limit."""

    def __init__(
        self, store: Store, limits: Sequence[Limit], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        # Shortest window first: a question refused by the minute limit must not use up the
        # day's allowance (limits after the first one exceeded are not counted).
        self._limits = sorted(limits, key=lambda limit: limit.per)
        self._clock = clock

    async def hit(self, conversation: str) -> float | None:
        """Count one question; ``None`` if allowed, else seconds until it would be."""
        now = self._clock()
        for limit in self._limits:
            window = math.floor(now / limit.per)
            count = await self._store.incr(counter_key(conversation, limit, window), limit.per)
            if count > limit.count:
                return (window + 1) * limit.per - now
        return None

    async def forget(self, conversation: str) -> None:
        """Delete the conversation's current counters (older ones expire on their own)."""
        now = self._clock()
        for limit in self._limits:
            window = math.floor(now / limit.per)
            await self._store.kv_delete(counter_key(conversation, limit, window))


def wait_text(texts: Texts, seconds: float) -> str:
    """ "30 秒", "5 分钟", "3 小时": rounded up, so the user never retries too early."""
    if seconds <= 60:
        return texts.wait_seconds.format(n=max(1, math.ceil(seconds)))
    if seconds <= 3600:
        return texts.wait_minutes.format(n=math.ceil(seconds / 60))
    return texts.wait_hours.format(n=math.ceil(seconds / 3600))


class RateLimit:
    """Outer middleware: a question over the limit gets a friendly reply, not the model."""

    def __init__(self, limiter: RateLimiter, texts: Texts) -> None:
        self._limiter = limiter
        self._texts = texts

    async def __call__(self, handler: Handler, inbound: Inbound) -> HandlerResult:
        result = await handler(inbound)
        if not isinstance(result, Ask):
            return result
        wait = await self._limiter.hit(str(inbound.conversation))
        if wait is None:
            return result
        log.info("message %s over the rate limit: retry in %.0fs", inbound.dedup_key, wait)
        return Reply(self._texts.rate_limited.format(wait=wait_text(self._texts, wait)))
