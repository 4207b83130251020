"""AI sessions: in ``command`` mode, only messages inside a /chatgpt session reach the model.

A session is one value in the store's kv (so it survives restarts and every instance sees it)
holding the time it ends. Each message of the user renews it for another ``ttl`` seconds.
The end time is measured with the injected clock rather than left to the store's expiry, so
tests can move time on without waiting; the store's own expiry only sweeps old keys away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from chatgate.core.decisions import Ask, Handler, HandlerResult, Reply
from chatgate.core.messages import Inbound, Kind
from chatgate.store.base import Store

log = logging.getLogger(__name__)


def session_key(conversation: str) -> str:
    return f"session:{conversation}"


class Sessions:
    """Start, renew, end and query a conversation's AI session."""

    def __init__(self, store: Store, *, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock

    @property
    def ttl(self) -> float:
        return self._ttl

    async def start(self, conversation: str) -> None:
        """Open a session (or renew the open one) lasting ``ttl`` from now."""
        ends = self._clock() + self._ttl
        await self._store.kv_set(session_key(conversation), repr(ends), ttl=self._ttl)

    async def active(self, conversation: str) -> bool:
        raw = await self._store.kv_get(session_key(conversation))
        if raw is None:
            return False
        try:
            return float(raw) > self._clock()
        except ValueError:
            return False

    async def touch(self, conversation: str) -> bool:
        """Renew the session if one is open; returns whether one was."""
        if not await self.active(conversation):
            return False
        await self.start(conversation)
        return True

    async def end(self, conversation: str) -> bool:
        """Close the session; returns whether one was open."""
        was_open = await self.active(conversation)
        await self._store.kv_delete(session_key(conversation))
        return was_open

    async def forget(self, conversation: str) -> None:
        """Delete the session state (the user unsubscribed)."""
        await self._store.kv_delete(session_key(conversation))


class SessionGate:
    """Outer middleware for ``command`` mode: outside a session, the model is not asked.

    Every user message renews an open session before it is routed (so /stop, routed after,
    ends it for good). A message that would ask the model outside a session gets ``hint``
    instead; commands, keyword replies, 「1」 and events pass as they are.
    """

    def __init__(self, sessions: Sessions, hint: str) -> None:
        self._sessions = sessions
        self._hint = hint

    async def __call__(self, handler: Handler, inbound: Inbound) -> HandlerResult:
        if inbound.kind is Kind.EVENT:
            return await handler(inbound)
        conversation = str(inbound.conversation)
        was_open = await self._sessions.touch(conversation)
        result = await handler(inbound)
        if not isinstance(result, Ask) or was_open:
            return result
        # "/chatgpt question" opens the session and asks in one message.
        if await self._sessions.active(conversation):
            return result
        log.info("message %s is outside an AI session: hint instead", inbound.dedup_key)
        return Reply(self._hint)
