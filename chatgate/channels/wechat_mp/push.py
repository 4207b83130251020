"""Push delivery: a finished answer sent through the customer-service API, each part once.

An answer is *handed to push* by marking its meta (``delivery=push``, see core delivery): from
then on 「1」 and the unread notice leave it alone, and the ``Pusher`` sends it when it is
finished — told by the job's finished-hook, by the window strategy if it was finished already,
or, after a restart, by ``resume``. All state is in the store:

- ``delivered_upto`` rises after each part WeChat accepted, and sending happens under the
  store's per-answer lock, re-reading the record once held: no part is sent twice, by this
  instance or another;
- meta ``push_sent`` counts messages sent (WeChat allows 5 per user message), ``push_state``
  says ``done`` or ``stopped:<why>``;
- answers handed to push and not done are listed under one key, so ``resume`` finds them.

Nothing is lost: when pushing stops early (48001, 45015, 45047, failures a retry did not fix)
the answer is *given back* (``delivery=reply``) and waits for 「1」 like a passive one, and the
user's next reply says so. 48001 is also remembered per account, so later messages are
answered passively.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from chatgate.channels.wechat_mp.api import SEND_PATH, RetryPolicy, WeChatAPI
from chatgate.channels.wechat_mp.errcodes import ErrorKind, WeChatAPIError
from chatgate.channels.wechat_mp.inbound import CHANNEL
from chatgate.channels.wechat_mp.typing import TypingIndicator
from chatgate.core.delivery import (
    DELIVERY_META,
    PUSHED,
    REPLIES,
    Delivery,
    Surface,
    cut_parts,
    handed_off,
)
from chatgate.core.locks import KeyedLocks
from chatgate.core.messages import ConversationKey
from chatgate.core.precedence import Precedence
from chatgate.core.splitting import utf8_len
from chatgate.core.tasks import SupervisorClosed, TaskSupervisor
from chatgate.core.telemetry import LOST_GIVEN_UP, NO_TELEMETRY, PUSH, Telemetry, unseen
from chatgate.core.texts import Texts
from chatgate.store.base import AnswerRecord, AnswerStatus, Store

log = logging.getLogger(__name__)

PUSH_STATE = "push_state"
PUSH_SENT = "push_sent"
DONE = "done"
PENDING_KEY = "wechat_mp:pending-pushes"
# How long an account that got 48001 is answered passively before push is tried again.
FORBIDDEN_FOR = 24 * 3600.0
# How long this process trusts what it last read about that.
FORBIDDEN_RECHECK = 10.0
# Each part is sent under the answer's lock; the lock is not renewed, so the send gives up
# (as a transient failure) well before the lock would expire.
SEND_LOCK_TTL = 45.0
SEND_TIME_LIMIT = 30.0
# Transient failures (WeChat busy, 5xx, network) of one part: tries in all, and the waits.
PUSH_RETRY = RetryPolicy(attempts=4, first_delay=1.0, max_delay=8.0)
# 45002 (too long) halves the part size down to this; WeChat's real limit is not documented.
MIN_PART_BYTES = 256


def forbidden_key(account: str) -> str:
    return f"wechat_mp:{account}:push-forbidden"


def push_lock_name(answer_id: str) -> str:
    return f"wechat_mp:push:{answer_id}"


@dataclass(frozen=True, slots=True)
class Planned:
    """One message to send: its text, and the answer offset it delivers up to."""

    text: str
    upto: int
    last: bool = False  # it ends the answer
    capped: bool = False  # the last message allowed; the rest waits for 「1」


class PendingPushes:
    """Ids of answers handed to push and not yet done, in the store for ``resume``.

    Changes are group-committed: a write waits ``BATCH_DELAY`` for the changes arriving meanwhile
    and takes them along, so hundreds of answers in flight cost a few writes a second.
    ``add`` and ``remove`` return once their change is in the store, or raise what the write
    raised.

    One writer task makes the writes, one after the other; callers wait on the future of the
    write their change goes with. (A lock taken by every caller in turn woke each of them to
    find its change written already, and asyncio's lock scans all its waiters whenever a new
    caller finds it free: under a burst of thousands of pushes that was quadratic.)
    """

    BATCH_DELAY = 0.05

    def __init__(self, store: Store, ttl: float) -> None:
        self._store = store
        self._ttl = ttl
        self._adds: set[str] = set()
        self._removes: set[str] = set()
        # The write that changes made now go with, while it has not started.
        self._next: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    async def add(self, answer_id: str) -> None:
        self._removes.discard(answer_id)
        self._adds.add(answer_id)
        await self._written()

    async def remove(self, *answer_ids: str) -> None:
        self._adds.difference_update(answer_ids)
        self._removes.update(answer_ids)
        await self._written()

    async def ids(self) -> list[str]:
        return self._parse(await self._store.kv_get(PENDING_KEY))

    async def _written(self) -> None:
        write = self._next
        if write is None:
            loop = asyncio.get_running_loop()
            write = self._next = loop.create_future()
            # Retrieved here, so a write whose callers were all cancelled does not warn.
            write.add_done_callback(lambda done: done.cancelled() or done.exception())
            if self._writer is None or self._writer.done():
                self._writer = loop.create_task(self._write_all(), name="pending-pushes")
        # Shielded: a caller cancelled while waiting must not cancel the write for the others.
        await asyncio.shield(write)

    async def _write_all(self) -> None:
        while (write := self._next) is not None:
            try:
                await asyncio.sleep(self.BATCH_DELAY)
                self._next = None
                adds, removes = self._adds, self._removes
                self._adds, self._removes = set(), set()
                await self._apply(adds, removes)
            except Exception as exc:
                write.set_exception(exc)
            except BaseException:  # cancelled (the loop is closing): so are its callers
                if self._next is write:
                    self._next = None  # the next caller starts a new write, and a writer
                write.cancel()
                raise
            else:
                write.set_result(None)

    async def _apply(self, adds: set[str], removes: set[str]) -> None:
        # The store's lock orders this read-modify-write against other processes.
        async with self._store.lock(PENDING_KEY + ":lock", ttl=10.0):
            ids = self._parse(await self._store.kv_get(PENDING_KEY))
            kept = [i for i in ids if i not in removes]
            changed = kept + sorted(adds.difference(kept))
            if changed != ids:
                await self._store.kv_set(PENDING_KEY, json.dumps(changed), ttl=self._ttl)

    @staticmethod
    def _parse(raw: str | None) -> list[str]:
        try:
            ids = json.loads(raw) if raw else []
        except ValueError:
            return []
        return [str(i) for i in ids] if isinstance(ids, list) else []


class Pusher:
    """Sends answers handed to push, part by part, and gives back what it cannot send."""

    def __init__(
        self,
        store: Store,
        api: WeChatAPI,
        surface: Surface,
        texts: Texts,
        supervisor: TaskSupervisor,
        *,
        max_messages: int,
        answer_ttl: float,
        typing: TypingIndicator | None = None,
        retry: RetryPolicy = PUSH_RETRY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry = NO_TELEMETRY,
        precedence: Precedence | None = None,
    ) -> None:
        self._store = store
        self._api = api
        self._telemetry = telemetry
        self._surface = surface
        self._texts = texts
        self._supervisor = supervisor
        self._max_messages = max_messages
        self._ttl = answer_ttl
        self._typing = typing
        self._clock = clock
        self._delivery = Delivery(store, surface, texts, answer_ttl=answer_ttl, clock=clock)
        self._pending = PendingPushes(store, answer_ttl)
        self._local = KeyedLocks()
        self._forbidden: dict[str, tuple[bool, float]] = {}
        self._retry = retry
        self._sleep = sleep
        self._number_bytes = utf8_len(texts.part_number.format(index=99, total=99))
        self._notice_bytes = utf8_len(texts.pending_notice)
        # Webhook acknowledgements go first: each part is sent once they leave it a turn.
        self._precedence = precedence
        # One bound method for every follow-up held back (``Precedence.later``), not one apiece.
        self._follow_in_turn = self._start_following

    # -- entry points ---------------------------------------------------------------------
    async def forbidden(self, account: str) -> bool:
        """Whether this account got 48001 lately: answer its users passively.

        Asked on every webhook, so the answer is remembered here for a few seconds.
        """
        now = self._clock()
        known = self._forbidden.get(account)
        if known is not None and now < known[1]:
            return known[0]
        value = await self._store.kv_get(forbidden_key(account)) is not None
        self._forbidden[account] = (value, now + FORBIDDEN_RECHECK)
        return value

    async def hand_over(self, answer: AnswerRecord, *, interacted: float) -> None:
        """Make ``answer`` a pushed one (unless given back already) and see it delivered.

        Called on the webhook path: it marks the record and returns; the rest runs in a task.
        ``interacted`` is when the user wrote, for the typing indicator.
        """
        if DELIVERY_META not in answer.meta:
            updated = await self._store.update_answer(answer.id, meta={DELIVERY_META: PUSHED})
            if updated is None:
                return
            answer = updated
        if not handed_off(answer):
            return
        if answer.status is AnswerStatus.RUNNING:  # its job started before it was handed over
            self._show_typing(answer, interacted)
        self._follow_later(answer)

    async def reply_first_push_rest(self, answer: AnswerRecord, *, reply_bytes: int) -> str:
        """The first part of a long finished answer, to reply inline; the rest is pushed.

        The inline part is numbered like the pushed ones and counts as one of the messages
        of the answer, so the user gets ``(1/n)`` in the reply and ``(2/n)`` … pushed.
        """
        inline = cut_parts(answer.text, self._numbered(reply_bytes), 0)
        rest = cut_parts(answer.text, self._numbered(self._surface.max_bytes), inline[0].upto)
        text = self._number(1, 1 + len(rest)) + inline[0].text
        await self._store.mark_delivered(answer.id, inline[0].upto)
        marked = await self._store.update_answer(
            answer.id, meta={DELIVERY_META: PUSHED, PUSH_SENT: "1"}
        )
        if marked is not None:
            self._follow_later(marked)
        return text

    def job_started(self, record: AnswerRecord) -> None:
        """The answer jobs' started-hook: show typing while the model answers."""
        if record.conversation.startswith(CHANNEL + ":") and handed_off(record):
            self._show_typing(record, record.created_at)

    def job_finished(self, record: AnswerRecord) -> None:
        """The answer jobs' finished-hook: push the answers handed to push."""
        if not record.conversation.startswith(CHANNEL + ":"):
            return
        if self._typing is not None:
            self._typing.finished(record.id)
        if handed_off(record):
            self._spawn(self.push(record.id), f"push:{record.id}")

    async def resume(self) -> None:
        """Push the finished answers handed to push and not done: at startup, what a previous
        run left; in a worker's maintenance round, what a dead instance left.

        Unfinished answers are left to their jobs (recovered before this runs), whose
        finished-hook pushes them. Pushing an answer twice at once is harmless.
        """
        resumed, settled = 0, []
        for answer_id in await self._pending.ids():
            record = await self._store.get_answer(answer_id)
            if record is None or not handed_off(record) or record.meta.get(PUSH_STATE) == DONE:
                settled.append(answer_id)
            elif record.finished:
                self._spawn(self.push(answer_id), f"push:{answer_id}")
                resumed += 1
        if settled:
            await self._pending.remove(*settled)
        if resumed:
            log.info("resuming %d pushes not finished yet", resumed)

    async def push(self, answer_id: str) -> None:
        """Send what is left of a finished answer handed to push; safe to call many times.

        One part at a time, each under the store's lock for this answer (held only while the
        part is sent, never during a backoff, so a crash blocks a restart's resume briefly).
        """
        async with self._local.hold(answer_id):
            max_bytes = self._surface.max_bytes
            failures = 0
            while True:
                if self._precedence is not None:
                    await self._precedence.turn()
                step = await self._send_next(answer_id, max_bytes)
                if step is None:
                    return
                if isinstance(step, int):  # a part went out
                    failures = 0
                    continue
                exc, record = step
                if exc.kind is ErrorKind.TOO_LONG and max_bytes // 2 >= MIN_PART_BYTES:
                    max_bytes //= 2
                    log.info("answer %s: %s; parts of %d bytes now", answer_id, exc, max_bytes)
                    continue
                failures += 1
                if exc.kind is ErrorKind.TRANSIENT and failures < self._retry.attempts:
                    delay = self._retry.delay(failures)
                    log.info("answer %s: %s; trying again in %.1fs", answer_id, exc, delay)
                    await self._sleep(delay)
                    continue
                await self._stopped(record, exc)
                return

    # -- internals ------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        try:
            self._supervisor.spawn(coro, name=name)
        except SupervisorClosed:
            # Shutting down: ``resume`` picks it up on the next start.
            log.info("%s left for the next start: shutting down", name)

    def _show_typing(self, answer: AnswerRecord, interacted: float) -> None:
        if self._typing is not None:
            user = ConversationKey.parse(answer.conversation).user
            self._typing.show(user, answer.id, interacted)

    def _follow_later(self, answer: AnswerRecord) -> None:
        """Follow ``answer`` in a task, started when background work gets its turn.

        The queue entry holds the answer's id, not its record: a burst holds thousands, and
        the garbage collector would walk every field of every record (the follow-up reads the
        record anyway).
        """
        if self._precedence is None:
            self._start_following(answer.id)
        else:
            self._precedence.later(self._follow_in_turn, answer.id)

    def _start_following(self, answer_id: str) -> None:
        self._spawn(self._follow(answer_id), f"push-follow:{answer_id}")

    async def _follow(self, answer_id: str) -> None:
        await self._pending.add(answer_id)
        current = await self._store.get_answer(answer_id)
        if current is not None and current.finished:
            await self.push(answer_id)

    async def _send_next(
        self, answer_id: str, max_bytes: int
    ) -> int | tuple[WeChatAPIError, AnswerRecord] | None:
        """Send the next part: its end offset, the error that stopped it, or None when done."""
        async with self._store.lock(push_lock_name(answer_id), ttl=SEND_LOCK_TTL):
            # Re-read once the lock is held: another instance may have sent parts meanwhile.
            record = await self._store.get_answer(answer_id)
            if record is None or not record.finished or not handed_off(record):
                return None
            if record.meta.get(PUSH_STATE) == DONE:
                return None
            if self._typing is not None:
                await self._typing.stop(answer_id)
            key = ConversationKey.parse(record.conversation)
            if await self.forbidden(key.account):
                await self._give_back(record, "48001")
                return None
            sent = _sent(record)
            part = self._next_part(record, sent, max_bytes)
            if part is None:  # nothing but whitespace is left
                await self._store.mark_delivered(answer_id, len(record.text))
                await self._finish(record)
                return None
            if sent >= self._max_messages:
                await self._give_back(record, "cap")
                return None
            text = part.text
            if part.last:
                text += await self._delivery.pending_notice(record)
            try:
                async with asyncio.timeout(SEND_TIME_LIMIT):
                    await self._api.send_text(key.user, text, attempts=1)
            except TimeoutError:
                return WeChatAPIError(SEND_PATH, None, "timed out"), record
            except WeChatAPIError as exc:
                return exc, record
            if unseen(record):
                self._telemetry.delivered(CHANNEL, PUSH)
            await self._store.mark_delivered(answer_id, part.upto)
            meta = {PUSH_SENT: str(sent + 1)}
            if part.last:
                meta[PUSH_STATE] = DONE
            counted = await self._store.update_answer(answer_id, meta=meta)
            if counted is None:  # deleted meanwhile (the user unsubscribed)
                return None
            if part.last:
                await self._pending.remove(answer_id)
                log.info("answer %s pushed in %d messages", answer_id, sent + 1)
                return None
            if part.capped:
                log.info(
                    "answer %s: %d messages pushed; the rest waits for 「1」", answer_id, sent + 1
                )
                await self._give_back(counted, "cap")
                return None
            return part.upto

    def _next_part(self, record: AnswerRecord, sent: int, max_bytes: int) -> Planned | None:
        """The next message of ``record``, numbered when the answer takes several.

        Room for the unread notice is always kept, so the cuts — and the numbering — do not
        change from part to part as other answers come and go.
        """
        start = record.delivered_upto
        if sent == 0:
            budget = max_bytes - self._notice_bytes
            whole = cut_parts(record.text, replace(self._surface, max_bytes=budget), start)
            if len(whole) <= 1:
                return Planned(whole[0].text, whole[0].upto, last=True) if whole else None
        parts = cut_parts(record.text, self._numbered(max_bytes), start)
        if not parts:
            return None
        total = sent + len(parts)
        first = parts[0]
        number = self._number(sent + 1, total)
        if total <= self._max_messages or sent + 1 < self._max_messages:
            return Planned(number + first.text, first.upto, last=len(parts) == 1)
        # The last message allowed, with more to come: it says how to read the rest.
        capped = Delivery(
            self._store,
            replace(self._surface, max_bytes=max_bytes),
            self._texts,
            answer_ttl=self._ttl,
        ).part(record, start, reserve=number + self._texts.pending_notice)
        return Planned(number + capped.text, capped.upto, last=not capped.more, capped=capped.more)

    def _numbered(self, max_bytes: int) -> Surface:
        """The surface numbered parts are cut for: room for the number and the unread notice."""
        budget = max_bytes - self._notice_bytes - self._number_bytes
        return replace(self._surface, max_bytes=budget)

    def _number(self, index: int, total: int) -> str:
        return self._texts.part_number.format(index=index, total=total)

    async def _finish(self, record: AnswerRecord) -> None:
        await self._store.update_answer(record.id, meta={PUSH_STATE: DONE})
        await self._pending.remove(record.id)
        log.info("answer %s pushed in %d messages", record.id, _sent(record))

    async def _give_back(self, record: AnswerRecord, why: str) -> None:
        """Stop pushing: the rest of the answer waits for 「1」 like a passive one."""
        given = await self._store.update_answer(
            record.id, meta={DELIVERY_META: REPLIES, PUSH_STATE: f"stopped:{why}"}
        )
        if given is None and not record.fully_delivered:
            # Gone from the store between the send and now: no 「1」 can fetch the rest.
            log.error("answer %s: push stopped (%s) and the answer is gone: lost", record.id, why)
            self._telemetry.answer_lost(CHANNEL, LOST_GIVEN_UP)
        await self._pending.remove(record.id)

    async def _stopped(self, record: AnswerRecord, exc: WeChatAPIError) -> None:
        why = str(exc.errcode) if exc.errcode is not None else exc.kind.value
        account = ConversationKey.parse(record.conversation).account
        if exc.kind is ErrorKind.FORBIDDEN:
            already = await self.forbidden(account)
            await self._store.kv_set(forbidden_key(account), str(exc.errcode), ttl=FORBIDDEN_FOR)
            self._forbidden[account] = (True, self._clock() + FORBIDDEN_RECHECK)
            if not already:
                log.error(
                    "WeChat account %s may not push (%s). Its users are answered in replies "
                    "for the next %.0f h; unpushed answers wait for 「1」. What to do: %s",
                    account,
                    exc,
                    FORBIDDEN_FOR / 3600,
                    exc.owner_action,
                )
        elif exc.kind in (ErrorKind.WINDOW, ErrorKind.CAP):
            log.info("answer %s: push stopped: %s; the rest waits for 「1」", record.id, exc)
        else:
            log.warning("answer %s: push failed: %s; the rest waits for 「1」", record.id, exc)
        await self._give_back(record, why)


def _sent(record: AnswerRecord) -> int:
    with contextlib.suppress(ValueError):
        return int(record.meta.get(PUSH_SENT, "0"))
    return 0
