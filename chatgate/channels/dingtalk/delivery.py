"""Delivering answers: a supervised task per message follows its answer and sends it.

DingTalk has no reply window to race: the message was acknowledged at once, and the answer is
sent when it is ready — streamed into an AI card when a card template is configured, else as
markdown messages cut under the size limits (``Delivery.parts``), each through the
sessionWebhook or the OpenAPI (``Replier``). A fixed reply (a command's output) goes out at
once; answers of one conversation are sent one after another, never interleaved.

Progress is the answer's ``delivered_upto``, raised after each message DingTalk accepted, so a
delivery cut short (a restart, a crash) resumes after the last part sent and nothing is sent
twice. Answers being delivered are listed in the store's kv (``dingtalk:pending``) until done;
``resume`` restarts them on startup. Across processes, a store lock per answer keeps two
instances from sending the same parts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from chatgate.channels.dingtalk.cards import CardFailed, CardStreamer, can_card
from chatgate.channels.dingtalk.inbound import CHANNEL, ReplyAddress
from chatgate.channels.dingtalk.webhook import Replier
from chatgate.core.delivery import Delivery
from chatgate.core.locks import KeyedLocks
from chatgate.core.outbox import SendFailed
from chatgate.core.tasks import SupervisorClosed, TaskSupervisor
from chatgate.core.telemetry import NO_TELEMETRY, PUSH, Telemetry, unseen
from chatgate.core.texts import Texts
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus, Store

log = logging.getLogger(__name__)

PENDING_KEY = "dingtalk:pending"
ERROR_META = "dingtalk.error"
# How long one wait for an answer lasts before it is checked again (a job may be queued).
_WAIT_STEP = 300.0
# Sending one answer's parts, retries included, stays well within this.
SEND_LOCK_TTL = 300.0


def deliver_lock(answer_id: str) -> str:
    return f"dingtalk:deliver:{answer_id}"


class DingTalkDelivery:
    """Follows answers and sends them; ``follow`` for new messages, ``resume`` at startup."""

    def __init__(
        self,
        store: Store,
        supervisor: TaskSupervisor,
        delivery: Delivery,
        replier: Replier,
        texts: Texts,
        *,
        cards: CardStreamer | None = None,
        fetch_wait: float = 120.0,
        answer_ttl: float = 86400.0,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._store = store
        self._supervisor = supervisor
        self._telemetry = telemetry
        self._delivery = delivery
        self._replier = replier
        self._texts = texts
        self._cards = cards
        self._fetch_wait = fetch_wait
        self._answer_ttl = answer_ttl
        self._clock = clock
        self._order = KeyedLocks()
        self._running: dict[str, asyncio.Task[None]] = {}

    @property
    def running(self) -> int:
        return len(self._running)

    async def follow(self, answer: AnswerRecord) -> None:
        """Deliver the answer to a message just accepted."""
        await self._remember(answer.id)
        self._start(answer.id)

    async def ensure(self, answer: AnswerRecord) -> None:
        """A message came again: make sure its answer is being delivered (here or elsewhere).

        Covers a process that claimed the message and died before its delivery was recorded.
        """
        if answer.fully_delivered or answer.id in self._running:
            return
        await self._remember(answer.id)
        self._start(answer.id)

    async def resume(self) -> int:
        """Restart deliveries a previous process left unfinished; returns how many."""
        ids = dict.fromkeys(await self._pending())
        for record in await self._store.unfinished_answers():
            if ReplyAddress.from_meta(record.meta) is not None:
                ids[record.id] = None
        for answer_id in ids:
            self._start(answer_id)
        if ids:
            log.info("resuming %d dingtalk deliveries", len(ids))
        return len(ids)

    def _start(self, answer_id: str) -> None:
        if answer_id in self._running:
            return
        try:
            task = self._supervisor.spawn(self._run(answer_id), name=f"dingtalk:{answer_id}")
        except SupervisorClosed:
            log.info("delivery of %s left pending: shutting down", answer_id)
            return
        self._running[answer_id] = task
        task.add_done_callback(lambda _: self._running.pop(answer_id, None))

    # -- one delivery ------------------------------------------------------------------------
    async def _run(self, answer_id: str) -> None:
        record = await self._store.get_answer(answer_id)
        address = ReplyAddress.from_meta(record.meta) if record is not None else None
        if record is None or address is None:
            log.info("answer %s is gone or not from dingtalk: nothing to deliver", answer_id)
        elif not record.fully_delivered:
            try:
                await self._deliver(record, address)
            except SendFailed as exc:
                log.error("answer %s could not be delivered: %s", answer_id, exc)
                await self._store.update_answer(answer_id, meta={ERROR_META: str(exc)[:500]})
        await self._forget(answer_id)

    async def _deliver(self, record: AnswerRecord, address: ReplyAddress) -> None:
        if record.kind is AnswerKind.FETCH:
            await self._deliver_fetch(record, address)
            return
        if (
            record.kind is AnswerKind.LLM
            and self._cards is not None
            and record.delivered_upto == 0
            and can_card(address)
        ):
            try:
                upto = await self._cards.stream(record, address)
            except CardFailed as exc:
                log.warning("answer %s: AI card failed (%s); sending messages", record.id, exc)
            else:
                if upto > 0:  # checked above: nothing of it was shown before the card
                    self._telemetry.delivered(CHANNEL, PUSH)
                await self._store.mark_delivered(record.id, upto)
        finished = await self._finished(record.id)
        if finished is not None:
            await self._send_rest(finished, address)

    async def _finished(self, answer_id: str) -> AnswerRecord | None:
        """The answer once finished; ``None`` if it expired first."""
        while True:
            record = await self._store.wait_answer(answer_id, _WAIT_STEP)
            if record is None or record.finished:
                return record

    async def _send_rest(self, record: AnswerRecord, address: ReplyAddress) -> None:
        async with (
            self._order.hold(record.conversation),
            self._store.lock(deliver_lock(record.id), ttl=SEND_LOCK_TTL),
        ):
            # Re-read under the lock: another process may have sent parts meanwhile.
            current = await self._store.get_answer(record.id)
            if current is None:
                return
            parts = self._delivery.parts(current, current.delivered_upto)
            for index, part in enumerate(parts):
                route = await self._replier.send(address, part.text)
                if index == 0 and unseen(current):
                    self._telemetry.delivered(CHANNEL, PUSH)
                await self._store.mark_delivered(current.id, part.upto)
                log.info("answer %s: part up to %d sent via %s", current.id, part.upto, route)
            if not parts:  # nothing left to show (a silent decision): it is delivered
                await self._store.mark_delivered(current.id, len(current.text))

    async def _deliver_fetch(self, record: AnswerRecord, address: ReplyAddress) -> None:
        ready = await self._delivery.ready(record, self._clock() + self._fetch_wait)
        if ready is None:
            ready = await self._store.update_answer(
                record.id, status=AnswerStatus.DONE, text=self._texts.still_thinking
            )
        if ready is not None:
            await self._send_rest(ready, address)

    # -- the pending list ---------------------------------------------------------------------
    async def _pending(self) -> list[str]:
        raw = await self._store.kv_get(PENDING_KEY)
        try:
            loaded = json.loads(raw) if raw else {}
        except ValueError:
            log.error("%s in the store is not JSON; starting it afresh", PENDING_KEY)
            loaded = {}
        return [str(k) for k in loaded] if isinstance(loaded, dict) else []

    async def _edit_pending(self, answer_id: str, *, add: bool) -> None:
        async with self._store.lock(PENDING_KEY + ":lock", ttl=10.0):
            raw = await self._store.kv_get(PENDING_KEY)
            try:
                pending = json.loads(raw) if raw else {}
            except ValueError:
                pending = {}
            if not isinstance(pending, dict):
                pending = {}
            now = self._clock()
            # Entries older than an answer's lifetime can only be leftovers.
            pending = {
                k: v
                for k, v in pending.items()
                if isinstance(v, int | float) and now - v < self._answer_ttl
            }
            if add:
                pending[answer_id] = now
            else:
                pending.pop(answer_id, None)
            await self._store.kv_set(PENDING_KEY, json.dumps(pending))

    async def _remember(self, answer_id: str) -> None:
        await self._edit_pending(answer_id, add=True)

    async def _forget(self, answer_id: str) -> None:
        await self._edit_pending(answer_id, add=False)
