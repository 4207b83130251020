"""Window strategies for accounts that may push: ``push`` acks at once, ``hybrid`` races the try.

- push: every try of a model question is answered ``success`` at once (WeChat stops retrying),
  and the answer is pushed when ready. Retries join the same claim: one job, one push.
- hybrid: the first try waits for the answer until its deadline and replies it inline when it
  is ready (a long one: its first part, the rest pushed); otherwise it replies ``success``,
  shows typing, and the answer is pushed.

In both, 「1」 fetches, commands and fixed replies are answered inline, as in passive mode, and
an account that got 48001 (may not push) is served by the passive strategy.
"""

from __future__ import annotations

import logging

from chatgate.channels.disconnect import Disconnect
from chatgate.channels.wechat_mp.push import Pusher
from chatgate.channels.wechat_mp.window import PassiveWindow
from chatgate.core.delivery import DELIVERY_META, PUSHED, Delivery
from chatgate.core.dispatcher import Dispatcher
from chatgate.core.messages import Inbound
from chatgate.core.telemetry import NO_TELEMETRY, Telemetry, inline_path, unseen
from chatgate.store.base import AnswerKind

log = logging.getLogger(__name__)


class PushWindow:
    """Acknowledge every try at once; the answer is pushed."""

    def __init__(self, dispatcher: Dispatcher, passive: PassiveWindow, pusher: Pusher) -> None:
        self._dispatcher = dispatcher
        self._passive = passive
        self._pusher = pusher

    async def respond(
        self, inbound: Inbound, arrived: float, client_gone: Disconnect
    ) -> str | None:
        if await self._pusher.forbidden(inbound.account):
            return await self._passive.respond(inbound, arrived, client_gone)
        # Marked for push as it is created: one store write less on the way to the ack.
        ticket = await self._dispatcher.accept(inbound, meta={DELIVERY_META: PUSHED})
        if ticket.answer.kind is not AnswerKind.LLM:
            return await self._passive.answer(ticket, inbound, arrived, client_gone)
        if ticket.first or DELIVERY_META not in ticket.answer.meta:
            await self._pusher.hand_over(ticket.answer, interacted=arrived)
        log.info("%s try %d acknowledged; the answer is pushed", inbound.dedup_key, ticket.attempt)
        return None


class HybridWindow:
    """Reply inline if the answer is ready by the first try's deadline, else push it."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        delivery: Delivery,
        passive: PassiveWindow,
        pusher: Pusher,
        *,
        deadline: float,
        reply_bytes: int = 2048,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._dispatcher = dispatcher
        self._delivery = delivery
        self._passive = passive
        self._pusher = pusher
        self._deadline = deadline
        self._reply_bytes = reply_bytes
        self._telemetry = telemetry

    async def respond(
        self, inbound: Inbound, arrived: float, client_gone: Disconnect
    ) -> str | None:
        if await self._pusher.forbidden(inbound.account):
            return await self._passive.respond(inbound, arrived, client_gone)
        ticket = await self._dispatcher.accept(inbound)
        answer = ticket.answer
        if answer.kind is not AnswerKind.LLM:
            return await self._passive.answer(ticket, inbound, arrived, client_gone)
        if DELIVERY_META in answer.meta:
            # A retry of a message already handed to push (or given back after it): the
            # answer arrives by itself or with 「1」; replying it here could show it twice.
            return None
        # A retry (its first try's response was lost) gets no longer than the first try had.
        first_arrived = arrived if ticket.first else min(arrived, answer.created_at)
        ready = await self._delivery.ready(answer, first_arrived + self._deadline)
        if ready is None:
            await self._pusher.hand_over(answer, interacted=first_arrived)
            log.info("%s not ready by the deadline: acknowledged, to be pushed", inbound.dedup_key)
            return None
        if DELIVERY_META in ready.meta:  # another try handed it to push meanwhile
            return None
        log.info("%s answered inline on try %d", inbound.dedup_key, ticket.attempt)
        if unseen(ready):
            self._telemetry.delivered(inbound.channel, inline_path(ticket.attempt))
        if not self._delivery.part(ready, 0).more:
            return await self._delivery.reply_text(ready)
        # Too long for one reply: the first part now, the rest pushed — no 「1」 needed.
        return await self._pusher.reply_first_push_rest(ready, reply_bytes=self._reply_bytes)
