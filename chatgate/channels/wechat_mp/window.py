"""Window strategies: what the HTTP response to one WeChat try carries.

WeChat waits 5 s for each try, then retries (3 tries in all, same MsgId). The passive
strategy, for accounts that cannot push, races the answer against each try's deadline:

- ready before the deadline → reply it (the first part, if it is long);
- not ready, more tries will come → hold the request past WeChat's timeout so it retries,
  never answering ``success`` (which would stop the retries);
- not ready on the last try → the placeholder: reply 「1」 (or open the link) to read it later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from chatgate.channels.disconnect import Disconnect
from chatgate.core.delivery import Delivery
from chatgate.core.dispatcher import Dispatcher, Ticket
from chatgate.core.messages import Inbound
from chatgate.core.telemetry import NO_TELEMETRY, Telemetry, inline_path, unseen
from chatgate.store.base import AnswerKind, AnswerRecord

log = logging.getLogger(__name__)

# WeChat drops a try after 5 s; holding a little longer makes sure it has given up on it.
PLATFORM_TIMEOUT = 5.0
HOLD_MARGIN = 1.0


class WindowStrategy(Protocol):
    async def respond(
        self, inbound: Inbound, arrived: float, client_gone: Disconnect
    ) -> str | None:
        """The text to reply to this try, or ``None`` to reply nothing (``success``)."""


class PassiveWindow:
    """Reply inside the HTTP response only, using WeChat's retries to wait longer."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        delivery: Delivery,
        *,
        deadline: float,
        tries: int,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._dispatcher = dispatcher
        self._delivery = delivery
        self._deadline = deadline
        self._tries = tries
        self._clock = clock
        self._telemetry = telemetry

    async def respond(
        self, inbound: Inbound, arrived: float, client_gone: Disconnect
    ) -> str | None:
        ticket = await self._dispatcher.accept(inbound)
        return await self.answer(ticket, inbound, arrived, client_gone)

    async def answer(
        self, ticket: Ticket, inbound: Inbound, arrived: float, client_gone: Disconnect
    ) -> str | None:
        """The passive reply to a try already accepted (other strategies fall back to it)."""
        ready = await self._delivery.ready(ticket.answer, arrived + self._deadline)
        if ready is not None:
            log.info("%s answered inline on try %d", inbound.dedup_key, ticket.attempt)
            return await self.reply(ready, inbound.channel, ticket.attempt)
        if ticket.attempt < self._tries:
            return await self._hold(ticket, inbound, arrived, client_gone)
        log.info("%s not ready on the last try: placeholder sent", inbound.dedup_key)
        if ticket.answer.kind is AnswerKind.LLM:
            self._telemetry.deferred(inbound.channel)
        return self._delivery.placeholder(ticket.answer)

    async def reply(self, ready: AnswerRecord, channel: str, attempt: int) -> str:
        """The reply text for a ready record, counted as delivered inline on ``attempt``."""
        if unseen(ready):
            self._telemetry.delivered(channel, inline_path(attempt))
        return await self._delivery.reply_text(ready)

    async def _hold(
        self, ticket: Ticket, inbound: Inbound, arrived: float, client_gone: Disconnect
    ) -> str | None:
        """Keep the try open until WeChat gives up on it, so that it sends the next one."""
        until = arrived + PLATFORM_TIMEOUT + HOLD_MARGIN
        waiting = asyncio.ensure_future(self._delivery.ready(ticket.answer, until))
        gone = asyncio.ensure_future(client_gone.wait())
        try:
            await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if client_gone.is_set():
            waiting.cancel()
            return None
        ready = await waiting
        if ready is None:
            return None
        # Still connected after WeChat's timeout: not WeChat (a test client or a proxy with a
        # longer timeout). The answer is ready, so give it rather than nothing.
        return await self.reply(ready, inbound.channel, ticket.attempt)
