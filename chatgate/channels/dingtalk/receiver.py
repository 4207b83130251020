"""One entry for both receive modes: a callback's JSON in, the message accepted and followed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from chatgate.channels.dingtalk.delivery import DingTalkDelivery
from chatgate.channels.dingtalk.inbound import is_stale, to_inbound
from chatgate.core.dispatcher import Dispatcher
from chatgate.errors import BadRequest

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # first time seen: routed, answer followed
    DUPLICATE = "duplicate"  # a redelivery: joins the answer of the first
    STALE = "stale"  # backlog older than the configured age: ignored


class Receiver:
    """Turns a robot callback into an accepted message whose answer will be delivered.

    Fast by design — a claim, a route and a record — so Stream mode can ack and HTTP mode can
    answer 200 right after it; the answer itself is generated and sent in the background.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        deliveries: DingTalkDelivery,
        *,
        robot_code: str,
        max_age: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dispatcher = dispatcher
        self._deliveries = deliveries
        self._robot_code = robot_code
        self._max_age = max_age
        self._clock = clock

    async def receive(self, data: Mapping[str, Any]) -> Outcome:
        """Accept one callback; raises ``BadRequest`` when it is not a robot message."""
        if not isinstance(data, Mapping):
            raise BadRequest("callback data is not a JSON object")
        inbound = to_inbound(data, robot_code=self._robot_code)
        if is_stale(inbound, now=self._clock(), max_age=self._max_age):
            age = self._clock() - inbound.created_at
            log.warning("ignoring %s: %.0f s old, older than the max age", inbound.dedup_key, age)
            return Outcome.STALE
        ticket = await self._dispatcher.accept(inbound)
        if ticket.first:
            await self._deliveries.follow(ticket.answer)
            return Outcome.ACCEPTED
        log.info("%s delivered again (try %d): one answer", inbound.dedup_key, ticket.attempt)
        await self._deliveries.ensure(ticket.answer)
        return Outcome.DUPLICATE
