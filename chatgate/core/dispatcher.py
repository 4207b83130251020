"""Dispatcher: claim a message once, route it, and hand every try the same answer record."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from chatgate.core.jobs import IMAGES_META
from chatgate.core.logcontext import log_scope
from chatgate.core.messages import Inbound
from chatgate.core.precedence import Precedence
from chatgate.core.queue import JobQueue
from chatgate.core.router import UNHANDLED, Ask, Fetch, Reply, Router, Silent
from chatgate.core.telemetry import LOST_RECORD_MISSING, NO_TELEMETRY, Telemetry
from chatgate.errors import StoreError
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus, Store

log = logging.getLogger(__name__)

# How long a retry waits for the first try to finish writing the answer record it claimed.
_RECORD_WAIT = 2.0


@dataclass(frozen=True, slots=True)
class Ticket:
    """What one try of a message is attached to."""

    answer: AnswerRecord
    first: bool  # this try made the claim (and routed the message)
    attempt: int  # the how-manieth try of this message this is, 1-based


def tries_key(dedup_key: str) -> str:
    return f"tries:{dedup_key}"


_last_id_time = 0


def new_answer_id() -> str:
    """A new answer's id: 32 hex digits, the creation time in nanoseconds, then 64 random bits.

    Time first, so ids sort in creation order (strictly, within a process) and a store's index
    of them grows at its end: random ids (uuid4) land all over it, and in SQLite every
    acknowledgement then wrote index pages of its own (about 30 % more of its write time).
    Ids are no capability, the page token is: they need not be unguessable, only unique, so
    the random bits come from ``random`` (seeded afresh in every process, forked ones too),
    not from a system call as ``secrets``' do.
    """
    global _last_id_time
    _last_id_time = max(time.time_ns(), _last_id_time + 1)
    return f"{_last_id_time:016x}{random.getrandbits(64):016x}"


# Random bytes for page tokens, taken from the operating system a page at a time: a system
# call per token was a visible part of an acknowledgement. ``next`` on the C iterator hands
# each token's bytes out once, whichever thread asks; a forked child starts a pool of its own.
_TOKEN_BYTES = 16
_POOL_BYTES = 4096
_token_pool: Iterator[tuple[bytes]] = iter(())


def _new_token_pool() -> None:
    global _token_pool
    _token_pool = iter(())


os.register_at_fork(after_in_child=_new_token_pool)


def new_page_token() -> str:
    """A capability for the answer page: the time in nanoseconds, then 128 random bits from
    ``os.urandom``; 32 URL-safe characters.

    Time first, so that tokens made close together share a prefix and land together in the
    store's unique index of them: random tokens landed all over it, and each acknowledgement
    then wrote an index page of its own (in SQLite, 0.9 of its 5.7 WAL frames). The random
    bits alone make the token unguessable; the time only places it.
    """
    global _token_pool
    drawn = next(_token_pool, None)
    if drawn is None:
        _token_pool = struct.iter_unpack(f"{_TOKEN_BYTES}s", os.urandom(_POOL_BYTES))
        drawn = next(_token_pool)
    # 8 + 16 bytes: a multiple of 3, so the base64 has no padding to strip.
    return base64.urlsafe_b64encode(time.time_ns().to_bytes(8, "big") + drawn[0]).decode("ascii")


class Dispatcher:
    """The one entry point channels call for every try of every message.

    The first try claims the message's dedup key atomically in the store, asks the router
    what the message is, and writes the answer record (starting the answer job if the model
    must answer). Every later try — a platform retry, on any instance — finds the claim and
    joins the same record, so one user message costs at most one model call. The job goes
    to ``jobs``: ``AnswerJobs`` runs it in this process, a shared queue on any worker.
    """

    def __init__(
        self,
        store: Store,
        router: Router,
        jobs: JobQueue,
        *,
        answer_ttl: float,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry = NO_TELEMETRY,
        precedence: Precedence | None = None,
    ) -> None:
        self._store = store
        self._router = router
        self._jobs = jobs
        self._ttl = answer_ttl
        self._clock = clock
        self._telemetry = telemetry
        self._precedence = precedence

    async def accept(self, inbound: Inbound, *, meta: Mapping[str, str] | None = None) -> Ticket:
        """Claim or join ``inbound``'s answer. ``meta``: for the record, if this try creates it
        (a channel's delivery marks, set with the record: no second write)."""
        # Log lines from here on, and from the answer job started here, name the message.
        with log_scope(
            channel=inbound.channel,
            message_id=inbound.dedup_key,
            conversation=str(inbound.conversation),
        ):
            return await self._accept(inbound, meta)

    async def _accept(self, inbound: Inbound, meta: Mapping[str, str] | None) -> Ticket:
        if self._precedence is not None:
            self._precedence.arrived()
        # Platform message ids are unique per account only: scope the claim by account.
        claim = f"{inbound.channel}:{inbound.account}:{inbound.dedup_key}"
        answer_id = new_answer_id()
        earlier = await self._store.claim_message(claim, answer_id, self._ttl, then_write=True)
        # The try that made the claim is the first; only retries count, which keeps the
        # first try (the hot path) one store round trip shorter.
        attempt = 1 if earlier is None else 1 + await self._store.incr(tries_key(claim), self._ttl)
        self._telemetry.try_seen(inbound.channel, attempt)
        if earlier is not None:
            record = await self._claimed_record(earlier, claim, inbound.channel)
            log.info("%s try %d joins answer %s", inbound.dedup_key, attempt, record.id)
            return Ticket(record, first=False, attempt=attempt)
        self._telemetry.message_received(inbound.channel, inbound.kind)
        # Message text is the user's private data: only at debug level, never at info.
        log.debug("%s %s: %r", inbound.dedup_key, inbound.kind, inbound.text)
        record = await self._route(inbound, answer_id, meta)
        log.info(
            "%s claimed by answer %s (%s) for %s",
            inbound.dedup_key,
            record.id,
            record.kind,
            inbound.conversation,
        )
        return Ticket(record, first=True, attempt=attempt)

    async def _claimed_record(self, answer_id: str, claim: str, channel: str) -> AnswerRecord:
        # The claim and the record are two writes; a concurrent try may see the claim first.
        deadline = self._clock() + _RECORD_WAIT
        while True:
            record = await self._store.get_answer(answer_id)
            if record is not None:
                return record
            if self._clock() >= deadline:
                # Every later try fails the same way: count the message lost once, anywhere.
                if await self._store.claim_message(f"lost:{claim}", answer_id, self._ttl) is None:
                    self._telemetry.answer_lost(channel, LOST_RECORD_MISSING)
                raise StoreError(f"claimed answer {answer_id} has no record")
            await asyncio.sleep(0.02)

    async def _route(
        self, inbound: Inbound, answer_id: str, extra: Mapping[str, str] | None
    ) -> AnswerRecord:
        decision = await self._router.resolve(inbound)
        if decision is UNHANDLED:
            decision = Silent()
        now = self._clock()
        meta = dict(inbound.reply_to)
        if extra:
            meta.update(extra)
        # A fixed reply or silence is done at once; a fetch or a question waits for its job.
        kind, status, question, text = AnswerKind.REPLY, AnswerStatus.DONE, inbound.text, ""
        finished_at: float | None = now
        match decision:
            case Reply(text=reply):
                text = reply
            case Silent():
                pass
            case Fetch():
                kind, status, finished_at = AnswerKind.FETCH, AnswerStatus.QUEUED, None
            case Ask(question=asked, images=images):
                kind, status, finished_at = AnswerKind.LLM, AnswerStatus.QUEUED, None
                question = asked
                if images:
                    meta[IMAGES_META] = "\n".join(images)
        # Built once, on the acknowledgement path: no copies.
        record = AnswerRecord(
            id=answer_id,
            conversation=str(inbound.conversation),
            dedup_key=inbound.dedup_key,
            kind=kind,
            question=question,
            page_token=new_page_token(),
            status=status,
            text=text,
            created_at=now,
            updated_at=now,
            finished_at=finished_at,
            expires_at=now + self._ttl,
            meta=meta,
        )
        record = await self._store.create_answer(record)
        if record.kind is AnswerKind.LLM:
            await self._jobs.enqueue(record)
        return record
