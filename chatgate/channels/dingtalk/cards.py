"""AI cards: the typewriter effect — one card per answer, its text growing as the model writes.

The card is created and delivered (``createAndDeliver``) when the answer job starts, then
``PUT /v1.0/card/streaming`` replaces its markdown with the whole text so far (``isFull``:
markdown variables take nothing else), at most once per ``interval`` however fast the model
writes — every call counts against the organisation's monthly API quota. The last update
carries the final text and ``isFinalize`` (or ``isError`` for the apology of a failed answer).

A card shows at most ``max_bytes`` of the answer (DingTalk advises about 3 K in all); a longer
answer fills the card up to a natural boundary and the rest follows as markdown messages.
``outTrackId`` comes from the answer id, so a delivery resumed after a restart streams into
the same card instead of creating another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from chatgate.channels.dingtalk.inbound import ReplyAddress
from chatgate.channels.dingtalk.openapi import DingTalkApiError, OpenApi
from chatgate.core.delivery import Surface, cut_parts
from chatgate.core.splitting import utf8_len
from chatgate.store.base import AnswerRecord, AnswerStatus, Store

log = logging.getLogger(__name__)

CARD_MAX_BYTES = 6000
_TIMER_SLACK = 0.005


class CardFailed(Exception):
    """The card could not be created or updated; the answer goes out as messages instead."""


def out_track_id(answer_id: str) -> str:
    return f"chatgate-{answer_id}"


def can_card(address: ReplyAddress) -> bool:
    """Cards go to a group, or to a single chat addressed by the sender's staff id."""
    return address.group or bool(address.staff_id)


class _Follower:
    """Keeps the latest record of an answer, read from ``watch_answer`` in a task of its own."""

    def __init__(self, store: Store, answer: AnswerRecord) -> None:
        self.latest: AnswerRecord | None = answer
        self.ended = False
        self.changed = asyncio.Event()
        self._task = asyncio.create_task(self._follow(store, answer.id))

    async def _follow(self, store: Store, answer_id: str) -> None:
        try:
            async for record in store.watch_answer(answer_id):
                self.latest = record
                self.changed.set()
            self.latest = await store.get_answer(answer_id)
        finally:
            self.ended = True
            self.changed.set()

    async def next(self) -> AnswerRecord | None:
        """The record after the next change (``None`` once the answer is gone)."""
        await self.changed.wait()
        self.changed.clear()
        return self.latest

    async def aclose(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class CardStreamer:
    """Streams answers into AI cards made from one template."""

    def __init__(
        self,
        openapi: OpenApi,
        store: Store,
        *,
        template: str,
        key: str,
        interval: float,
        max_bytes: int = CARD_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._openapi = openapi
        self._store = store
        self._template = template
        self._key = key
        self._interval = interval
        self._surface = Surface(max_bytes=max_bytes)
        self._clock = clock

    def visible(self, text: str) -> tuple[str, int]:
        """What the card shows of ``text``, and the offset in ``text`` where that ends."""
        if utf8_len(text) <= self._surface.max_bytes:
            return text.strip(), len(text)
        first = cut_parts(text, self._surface)[0]
        return first.text, first.upto

    async def _until(self, moment: float) -> None:
        pause = moment - self._clock()
        if pause > 0:
            # A timer may fire a hair early, and the cap is a promise: sleep a little over.
            await asyncio.sleep(pause + _TIMER_SLACK)

    async def stream(self, answer: AnswerRecord, address: ReplyAddress) -> int:
        """Stream ``answer`` into a card until it finishes; returns how much of it the card shows.

        Raises ``CardFailed`` when DingTalk refuses the card or an update.
        """
        follower = _Follower(self._store, answer)
        try:
            return await self._stream(follower, out_track_id(answer.id), address)
        except DingTalkApiError as exc:
            raise CardFailed(str(exc)) from exc
        finally:
            await follower.aclose()

    async def _stream(self, follower: _Follower, track: str, address: ReplyAddress) -> int:
        record = follower.latest
        # The card appears when the job starts, so cards keep the order of the answers.
        while record is not None and record.status is AnswerStatus.QUEUED and not follower.ended:
            record = await follower.next()
        if record is None:
            return 0
        await self._openapi.create_card(self._template, track, address, {self._key: ""})
        sent = ""
        next_at = self._clock()
        while not record.finished:
            shown, _ = self.visible(record.text)
            if shown and shown != sent:
                if next_at > self._clock():
                    await self._until(next_at)
                    record = follower.latest or record
                    if record.finished:
                        break
                    shown, _ = self.visible(record.text)
                await self._openapi.stream_card(track, self._key, shown)
                sent = shown
                # Counted from the end of the call: updates stay ``interval`` apart at DingTalk.
                next_at = self._clock() + self._interval
                continue
            latest = await follower.next()
            if latest is None:
                return 0
            record = latest
        await self._until(next_at)
        shown, upto = self.visible(record.text)
        failed = record.status is AnswerStatus.FAILED
        await self._openapi.stream_card(track, self._key, shown, finalize=True, error=failed)
        log.info("card %s %s: %d chars shown", track, "failed" if failed else "done", upto)
        return upto
