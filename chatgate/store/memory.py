"""``MemoryStore``: the Store protocol in dicts, for tests, demos and ``memory://``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from chatgate.errors import StoreError
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus, Turn
from chatgate.store.watch import ChangeFeed, hold_lock, wait_finished, watch_changes


def _expired(expires_at: float | None, now: float) -> bool:
    return expires_at is not None and expires_at <= now


def _copy(record: AnswerRecord) -> AnswerRecord:
    # ``meta`` is a mutable dict inside a frozen record: never share it with callers.
    return record.with_changes(meta=dict(record.meta))


class MemoryStore:
    """Everything in this process's memory; gone when it exits.

    Each method runs without awaiting between its reads and writes, so on one event loop it
    is atomic without locks. ``clock`` gives the time for expiries and timestamps (tests
    inject a fake one); ``poll_interval`` is how often a lock waiter re-checks for expiry.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.time, poll_interval: float = 0.25
    ) -> None:
        self._clock = clock
        self._poll = poll_interval
        self._claims: dict[str, tuple[str, float]] = {}
        self._answers: dict[str, AnswerRecord] = {}
        self._by_token: dict[str, str] = {}
        self._seq = 0
        self._turns: dict[str, list[Turn]] = {}
        self._context_start: dict[str, int] = {}
        self._values: dict[str, tuple[str, float | None]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._answer_feed = ChangeFeed()
        self._lock_feed = ChangeFeed()

    # -- lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    # -- message claims -------------------------------------------------------------------
    async def claim_message(
        self, dedup_key: str, answer_id: str, ttl: float, *, then_write: bool = False
    ) -> str | None:
        now = self._clock()
        held = self._claims.get(dedup_key)
        if held is not None and not _expired(held[1], now):
            return held[0]
        self._claims[dedup_key] = (answer_id, now + ttl)
        return None

    # -- answers --------------------------------------------------------------------------
    async def create_answer(self, record: AnswerRecord) -> AnswerRecord:
        if record.id in self._answers:
            raise StoreError(f"answer {record.id!r} exists already")
        if record.page_token in self._by_token:
            raise StoreError("page token is in use by another answer")
        self._seq += 1
        stored = record.with_changes(seq=self._seq, meta=dict(record.meta))
        self._answers[record.id] = stored
        self._by_token[record.page_token] = record.id
        self._answer_feed.notify(record.id)
        return _copy(stored)

    async def get_answer(self, answer_id: str) -> AnswerRecord | None:
        record = self._answers.get(answer_id)
        return None if record is None else _copy(record)

    async def get_answer_by_token(self, page_token: str) -> AnswerRecord | None:
        answer_id = self._by_token.get(page_token)
        record = None if answer_id is None else self._answers.get(answer_id)
        if record is None or _expired(record.expires_at, self._clock()):
            return None
        return _copy(record)

    async def append_answer_text(self, answer_id: str, chunk: str) -> None:
        record = self._answers.get(answer_id)
        if record is None or record.finished or not chunk:
            return
        self._put(record.with_changes(text=record.text + chunk, updated_at=self._clock()))

    async def update_answer(
        self,
        answer_id: str,
        *,
        status: AnswerStatus | None = None,
        text: str | None = None,
        error: str | None = None,
        meta: dict[str, str] | None = None,
    ) -> AnswerRecord | None:
        record = self._answers.get(answer_id)
        if record is None:
            return None
        now = self._clock()
        new_status = record.status if status is None else status
        finished_at = (record.finished_at or now) if new_status.terminal else None
        return self._put(
            record.with_changes(
                status=new_status,
                text=record.text if text is None else text,
                error=record.error if error is None else error,
                meta=record.meta if meta is None else {**record.meta, **meta},
                updated_at=now,
                finished_at=finished_at,
            )
        )

    async def mark_delivered(self, answer_id: str, upto: int) -> AnswerRecord | None:
        record = self._answers.get(answer_id)
        if record is None:
            return None
        if upto <= record.delivered_upto:
            return _copy(record)
        return self._put(record.with_changes(delivered_upto=upto, updated_at=self._clock()))

    async def wait_answer(self, answer_id: str, timeout: float) -> AnswerRecord | None:  # noqa: ASYNC109
        # Every change goes through this object and notifies the feed: no polling needed.
        return await wait_finished(self._answer_feed, self.get_answer, answer_id, timeout, None)

    def watch_answer(self, answer_id: str) -> AsyncIterator[AnswerRecord]:
        return watch_changes(self._answer_feed, self.get_answer, answer_id, None)

    async def unfinished_answers(self) -> list[AnswerRecord]:
        return [
            _copy(r) for r in self._answers.values() if r.kind is AnswerKind.LLM and not r.finished
        ]

    async def conversation_answers(
        self, conversation: str, *, undelivered_only: bool = False, limit: int = 50
    ) -> list[AnswerRecord]:
        if limit <= 0:
            return []
        # Insertion order is seq order: records are only ever replaced in place.
        found = [
            r
            for r in self._answers.values()
            if r.conversation == conversation and not (undelivered_only and r.fully_delivered)
        ]
        return [_copy(r) for r in found[-limit:]]

    def _put(self, record: AnswerRecord) -> AnswerRecord:
        self._answers[record.id] = record
        self._answer_feed.notify(record.id)
        return _copy(record)

    # -- conversations --------------------------------------------------------------------
    async def append_turns(self, conversation: str, turns: Sequence[Turn]) -> None:
        if turns:
            self._turns.setdefault(conversation, []).extend(turns)

    async def recent_turns(self, conversation: str, limit: int) -> list[Turn]:
        if limit <= 0:
            return []
        since_reset = self._turns.get(conversation, [])[self._context_start.get(conversation, 0) :]
        return since_reset[-limit:]

    async def history(
        self, conversation: str, *, limit: int = 20, before: float | None = None
    ) -> list[Turn]:
        if limit <= 0:
            return []
        turns = self._turns.get(conversation, [])
        if before is not None:
            turns = [t for t in turns if t.at < before]
        return turns[-limit:]

    async def reset_context(self, conversation: str) -> None:
        self._context_start[conversation] = len(self._turns.get(conversation, []))

    async def delete_conversation(self, conversation: str) -> None:
        gone = {r.id for r in self._answers.values() if r.conversation == conversation}
        for answer_id in gone:
            del self._by_token[self._answers.pop(answer_id).page_token]
        self._claims = {k: v for k, v in self._claims.items() if v[0] not in gone}
        self._turns.pop(conversation, None)
        self._context_start.pop(conversation, None)
        for answer_id in gone:
            self._answer_feed.notify(answer_id)

    # -- small keyed values ---------------------------------------------------------------
    async def kv_get(self, key: str) -> str | None:
        held = self._values.get(key)
        if held is None or _expired(held[1], self._clock()):
            return None
        return held[0]

    async def kv_set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._values[key] = (value, None if ttl is None else self._clock() + ttl)

    async def kv_delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def incr(self, key: str, ttl: float) -> int:
        now = self._clock()
        held = self._values.get(key)
        expires_at: float | None
        if held is None or _expired(held[1], now):
            count, expires_at = 1, now + ttl
        else:
            try:
                count, expires_at = int(held[0]) + 1, held[1]
            except ValueError:
                raise StoreError(f"value of {key!r} is not a counter") from None
        self._values[key] = (str(count), expires_at)
        return count

    def lock(self, name: str, ttl: float = 30.0) -> AbstractAsyncContextManager[None]:
        async def try_acquire(owner: str) -> bool:
            now = self._clock()
            held = self._locks.get(name)
            if held is not None and not _expired(held[1], now):
                return False
            self._locks[name] = (owner, now + ttl)
            return True

        async def release(owner: str) -> None:
            held = self._locks.get(name)
            if held is not None and held[0] == owner:
                del self._locks[name]

        return hold_lock(self._lock_feed, name, try_acquire, release, self._poll)

    # -- housekeeping ---------------------------------------------------------------------
    async def purge_expired(self) -> int:
        now = self._clock()
        answers = [r for r in self._answers.values() if _expired(r.expires_at, now)]
        for record in answers:
            del self._answers[record.id]
            del self._by_token[record.page_token]
            self._answer_feed.notify(record.id)
        claims = [k for k, (_, until) in self._claims.items() if until <= now]
        for key in claims:
            del self._claims[key]
        values = [k for k, (_, maybe_until) in self._values.items() if _expired(maybe_until, now)]
        for key in values:
            del self._values[key]
        locks = [k for k, (_, until) in self._locks.items() if until <= now]
        for key in locks:
            del self._locks[key]
        return len(answers) + len(claims) + len(values) + len(locks)
