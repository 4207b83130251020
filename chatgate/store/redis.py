"""``RedisStore``: the Store protocol on a Redis server shared by many gateway instances.

``CHATGATE_STORE=redis://host:port/db`` (``rediss://`` for TLS). Every key lives under
``CHATGATE_REDIS_PREFIX`` (names in ``redis_keys``); every read-modify-write is one Lua
script (``redis_scripts``), so it is atomic however many instances run. Answers are hashes
with their text in a string grown by APPEND; conversations are lists; waiters follow
answers through pub/sub (``redis_feed``). Needs Redis 6.2 or later, one server (or a
primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from chatgate.errors import StoreError
from chatgate.store import redis_scripts as lua
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus, Turn
from chatgate.store.redis_feed import CONFIRM_LIMIT, Subscriptions
from chatgate.store.redis_keys import DEFAULT_PREFIX, RedisKeys
from chatgate.store.watch import ChangeFeed, hold_lock, wait_finished, watch_changes

log = logging.getLogger(__name__)

# Redis removes a temporary key this long after the store's clock says it expired; until
# then the clock decides (and purge_expired may delete it earlier).
GRACE = 60.0
_META = "m:"
_TEXT_ONLY = "text"  # what APPEND_TEXT publishes
_BATCH = 50
_PURGE_BATCH = 500
# A blocked XREADGROUP must come back well within this.
SOCKET_TIMEOUT = 15.0


def _ms(seconds: float) -> int:
    """A Redis expiry in milliseconds for something that expires in ``seconds``."""
    return max(1, math.ceil((max(seconds, 0.0) + GRACE) * 1000))


def _num(value: float) -> str:
    return repr(float(value))


def _fields(record: AnswerRecord) -> list[str]:
    """The record as hash fields and values, text (kept apart) and seq (assigned) aside."""
    pairs: dict[str, str] = {
        "id": record.id,
        "conversation": record.conversation,
        "dedup_key": record.dedup_key,
        "kind": record.kind.value,
        "question": record.question,
        "page_token": record.page_token,
        "status": record.status.value,
        "created_at": _num(record.created_at),
        "updated_at": _num(record.updated_at),
        "delivered_upto": str(record.delivered_upto),
    }
    if record.error is not None:
        pairs["error"] = record.error
    if record.finished_at is not None:
        pairs["finished_at"] = _num(record.finished_at)
    if record.expires_at is not None:
        pairs["expires_at"] = _num(record.expires_at)
    for key, value in record.meta.items():
        pairs[_META + key] = value
    return [item for pair in pairs.items() for item in pair]


def _optional_float(value: str | None) -> float | None:
    return None if value is None else float(value)


def _record(raw: Any) -> AnswerRecord | None:
    """An answer from a script's ``{HGETALL, text}`` reply; ``None`` when it does not exist."""
    if not raw:
        return None
    flat, text = raw
    if not flat:
        return None
    fields = dict(zip(flat[::2], flat[1::2], strict=True))
    return AnswerRecord(
        id=fields["id"],
        conversation=fields["conversation"],
        dedup_key=fields["dedup_key"],
        kind=AnswerKind(fields["kind"]),
        question=fields["question"],
        page_token=fields["page_token"],
        status=AnswerStatus(fields["status"]),
        text=text or "",
        error=fields.get("error"),
        created_at=float(fields["created_at"]),
        updated_at=float(fields["updated_at"]),
        finished_at=_optional_float(fields.get("finished_at")),
        expires_at=_optional_float(fields.get("expires_at")),
        seq=int(fields["seq"]),
        delivered_upto=int(fields["delivered_upto"]),
        meta={k[len(_META) :]: v for k, v in fields.items() if k.startswith(_META)},
    )


def _turn_json(turn: Turn) -> str:
    return json.dumps(
        {"role": turn.role, "content": turn.content, "at": turn.at, "answer_id": turn.answer_id},
        ensure_ascii=False,
    )


def _strs(values: Any) -> list[str]:
    """A list reply as strings (the client decodes replies)."""
    return [str(value) for value in values]


def _turn(raw: str) -> Turn:
    data = json.loads(raw)
    return Turn(
        role=data["role"], content=data["content"], at=data["at"], answer_id=data["answer_id"]
    )


def connect(url: str) -> Redis:
    """A client for ``url`` that rides out a Redis restart.

    A command that fails on a dead connection is sent again on a new one (a few times, with
    backoff); timeouts are not retried, since the command may have run. RESP2, whose reply
    shapes (streams, pub/sub) every Redis since 2.x speaks the same way.
    """
    return Redis.from_url(
        url,
        protocol=2,
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 6, (RedisConnectionError,)),
        socket_connect_timeout=5.0,
        socket_timeout=SOCKET_TIMEOUT,
        socket_keepalive=True,
        health_check_interval=30,
    )


class RedisStore:
    """All state in one Redis database, shared by every instance using the same prefix.

    ``clock`` decides expiry, as in every backend (tests move it); Redis deletes each
    temporary key ``GRACE`` seconds after that. ``poll_interval`` is how often a waiter
    re-reads even without a notification (a safety net behind pub/sub) and a lock waiter
    retries.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 1.0,
    ) -> None:
        self._url = url
        self.keys = RedisKeys(prefix)
        self._clock = clock
        self._poll = poll_interval
        self._client: Redis | None = None
        self._subs: Subscriptions | None = None
        self._scripts: dict[str, AsyncScript] = {}
        # Every change of an answer (watchers), and every change but streamed text (waiters
        # for the finish, which need not read the record once per chunk).
        self._answer_feed = ChangeFeed()
        self._status_feed = ChangeFeed()
        self._lock_feed = ChangeFeed()
        self._opening = asyncio.Lock()

    @property
    def client(self) -> Redis:
        """The connection pool, for other Redis parts of chatgate (the job stream)."""
        if self._client is None:
            raise StoreError("the Redis store is not open")
        return self._client

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    # -- lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        async with self._opening:
            if self._client is not None:
                return
            client = connect(self._url)
            try:
                await client.ping()
                subs = Subscriptions(
                    client, self.keys.feed_alive, self._published, self._reconnected
                )
                await subs.start()
            except (RedisError, OSError, TimeoutError) as exc:
                await client.aclose()
                raise StoreError(f"cannot reach Redis: {exc}") from exc
            self._scripts = {
                name: client.register_script(getattr(lua, name))
                for name in (
                    "CLAIM",
                    "CREATE_ANSWER",
                    "READ_ANSWERS",
                    "APPEND_TEXT",
                    "UPDATE_ANSWER",
                    "MARK_DELIVERED",
                    "UNFINISHED_IN",
                    "RECENT_TURNS",
                    "RESET_CONTEXT",
                    "DELETE_CONVERSATION",
                    "INCR",
                    "LOCK_ACQUIRE",
                    "LOCK_RELEASE",
                    "LOCK_RENEW",
                    "PURGE",
                )
            }
            self._client, self._subs = client, subs

    async def close(self) -> None:
        async with self._opening:
            client, self._client = self._client, None
            subs, self._subs = self._subs, None
            if subs is not None:
                await subs.stop()
            if client is not None:
                await client.aclose()

    async def ping(self) -> None:
        with self._errors():
            await self.client.ping()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Redis failures as ``StoreError``."""
        try:
            yield
        except ResponseError as exc:
            raise StoreError(f"Redis: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc

    async def _run(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self._client is None:
            raise StoreError("the Redis store is not open")
        with self._errors():
            return await self._scripts[script](keys=list(keys), args=list(args))

    # -- live feed ------------------------------------------------------------------------
    def _published(self, channel: str, data: str) -> None:
        answers, locks = self.keys.answer_channel(""), self.keys.lock_channel("")
        if channel.startswith(answers):
            self._changed(channel[len(answers) :], text_only=data == _TEXT_ONLY)
        elif channel.startswith(locks):
            self._lock_feed.notify(channel[len(locks) :])

    def _changed(self, answer_id: str, *, text_only: bool = False) -> None:
        self._answer_feed.notify(answer_id)
        if not text_only:
            self._status_feed.notify(answer_id)

    def _reconnected(self) -> None:
        self._answer_feed.notify_all()
        self._status_feed.notify_all()
        self._lock_feed.notify_all()

    def _subscribed(
        self, channel: str, within: float = CONFIRM_LIMIT
    ) -> AbstractAsyncContextManager[None]:
        if self._subs is None:
            raise StoreError("the Redis store is not open")
        return self._subs.hold(channel, within)

    # -- message claims -------------------------------------------------------------------
    async def claim_message(
        self, dedup_key: str, answer_id: str, ttl: float, *, then_write: bool = False
    ) -> str | None:
        now = self._clock()
        key = self.keys.claim(dedup_key)
        held = await self._run(
            "CLAIM",
            [key, self.keys.answer_claims(answer_id), self.keys.expiries],
            [answer_id, _num(now), _num(now + ttl), _ms(ttl)],
        )
        return None if held is None else str(held)

    # -- answers --------------------------------------------------------------------------
    async def create_answer(self, record: AnswerRecord) -> AnswerRecord:
        now = self._clock()
        expires = record.expires_at
        unfinished = record.kind is AnswerKind.LLM and not record.finished
        seq = await self._run(
            "CREATE_ANSWER",
            [
                self.keys.answer(record.id),
                self.keys.answer_text(record.id),
                self.keys.page_token(record.page_token),
                self.keys.answer_seq,
                self.keys.conversation_answers(record.conversation),
                self.keys.unfinished,
                self.keys.expiries,
            ],
            [
                record.id,
                record.text,
                "" if expires is None else _ms(expires - now),
                "" if expires is None else _num(expires),
                "1" if unfinished else "0",
                self.keys.answer_channel(record.id),
                *_fields(record),
            ],
        )
        self._changed(record.id)
        return record.with_changes(seq=int(seq), meta=dict(record.meta))

    async def _read(self, answer_ids: Sequence[str]) -> list[AnswerRecord | None]:
        if not answer_ids:
            return []
        keys = [k for i in answer_ids for k in (self.keys.answer(i), self.keys.answer_text(i))]
        raw = await self._run("READ_ANSWERS", keys, [])
        return [_record(item) for item in raw]

    async def get_answer(self, answer_id: str) -> AnswerRecord | None:
        return (await self._read([answer_id]))[0]

    async def get_answer_by_token(self, page_token: str) -> AnswerRecord | None:
        with self._errors():
            answer_id = await self.client.get(self.keys.page_token(page_token))
        if answer_id is None:
            return None
        record = await self.get_answer(str(answer_id))
        if record is None or record.page_token != page_token:
            return None
        if record.expires_at is not None and record.expires_at <= self._clock():
            return None
        return record

    async def append_answer_text(self, answer_id: str, chunk: str) -> None:
        if not chunk:
            return
        changed = await self._run(
            "APPEND_TEXT",
            [self.keys.answer(answer_id), self.keys.answer_text(answer_id)],
            [chunk, _num(self._clock()), self.keys.answer_channel(answer_id)],
        )
        if changed:
            self._changed(answer_id, text_only=True)

    async def update_answer(
        self,
        answer_id: str,
        *,
        status: AnswerStatus | None = None,
        text: str | None = None,
        error: str | None = None,
        meta: dict[str, str] | None = None,
    ) -> AnswerRecord | None:
        raw = await self._run(
            "UPDATE_ANSWER",
            [
                self.keys.answer(answer_id),
                self.keys.answer_text(answer_id),
                self.keys.unfinished,
            ],
            [
                _num(self._clock()),
                "" if status is None else status.value,
                "0" if text is None else "1",
                text or "",
                "0" if error is None else "1",
                error or "",
                self.keys.answer_channel(answer_id),
                *(item for k, v in (meta or {}).items() for item in (_META + k, v)),
            ],
        )
        record = _record(raw)
        if record is not None:
            self._changed(answer_id)
        return record

    async def mark_delivered(self, answer_id: str, upto: int) -> AnswerRecord | None:
        raw = await self._run(
            "MARK_DELIVERED",
            [self.keys.answer(answer_id), self.keys.answer_text(answer_id)],
            [str(upto), _num(self._clock()), self.keys.answer_channel(answer_id)],
        )
        record = _record(raw)
        if record is not None:
            self._changed(answer_id)
        return record

    async def wait_answer(self, answer_id: str, timeout: float) -> AnswerRecord | None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._subscribed(self.keys.answer_channel(answer_id), min(timeout, 2.0)):
            remaining = max(0.0, deadline - loop.time())
            return await wait_finished(
                self._status_feed, self.get_answer, answer_id, remaining, self._poll
            )

    async def watch_answer(self, answer_id: str) -> AsyncIterator[AnswerRecord]:
        async with self._subscribed(self.keys.answer_channel(answer_id)):
            async for record in watch_changes(
                self._answer_feed, self.get_answer, answer_id, self._poll
            ):
                yield record

    async def unfinished_answers(self) -> list[AnswerRecord]:
        with self._errors():
            ids = _strs(await self.client.zrange(self.keys.unfinished, 0, -1))
        found: list[AnswerRecord] = []
        for start in range(0, len(ids), _BATCH):
            for record in await self._read(ids[start : start + _BATCH]):
                if record is not None and record.kind is AnswerKind.LLM and not record.finished:
                    found.append(record)
        return sorted(found, key=lambda r: r.seq)

    async def conversation_answers(
        self, conversation: str, *, undelivered_only: bool = False, limit: int = 50
    ) -> list[AnswerRecord]:
        if limit <= 0:
            return []
        with self._errors():
            newest_first = _strs(
                await self.client.zrevrange(self.keys.conversation_answers(conversation), 0, -1)
            )
        found: list[AnswerRecord] = []
        for start in range(0, len(newest_first), max(limit, _BATCH)):
            batch = newest_first[start : start + max(limit, _BATCH)]
            for record in await self._read(batch):
                # An id whose answer Redis already expired is skipped; purge drops it.
                if record is None or (undelivered_only and record.fully_delivered):
                    continue
                found.append(record)
                if len(found) == limit:
                    return found[::-1]
        return found[::-1]

    async def unfinished_in(self, conversation: str, upto_seq: int) -> list[AnswerRecord]:
        """The conversation's unfinished model answers with ``seq <= upto_seq``, oldest first.

        Not part of the Store protocol: what a Redis worker must answer before a job.
        """
        ids = await self._run(
            "UNFINISHED_IN",
            [self.keys.conversation_answers(conversation)],
            [self.keys.answer(""), upto_seq],
        )
        records = await self._read(_strs(ids))
        return [r for r in records if r is not None and not r.finished]

    # -- conversations --------------------------------------------------------------------
    async def append_turns(self, conversation: str, turns: Sequence[Turn]) -> None:
        if not turns:
            return
        with self._errors():
            await self.client.rpush(self.keys.turns(conversation), *map(_turn_json, turns))

    async def recent_turns(self, conversation: str, limit: int) -> list[Turn]:
        if limit <= 0:
            return []
        raw = await self._run(
            "RECENT_TURNS",
            [self.keys.turns(conversation), self.keys.context_start(conversation)],
            [limit],
        )
        return [_turn(item) for item in raw]

    async def history(
        self, conversation: str, *, limit: int = 20, before: float | None = None
    ) -> list[Turn]:
        if limit <= 0:
            return []
        key = self.keys.turns(conversation)
        with self._errors():
            end = await self.client.llen(key)
            if before is None:
                rows = _strs(await self.client.lrange(key, max(0, end - limit), -1))
                return [_turn(row) for row in rows]
            # Page backwards from a fixed end: turns appended meanwhile do not shift indexes.
            page = max(limit * 2, 100)
            found: list[Turn] = []
            while end > 0 and len(found) < limit:
                start = max(0, end - page)
                rows = _strs(await self.client.lrange(key, start, end - 1))
                older = [t for t in map(_turn, rows) if t.at < before]
                found = older + found
                end = start
        return found[-limit:]

    async def reset_context(self, conversation: str) -> None:
        await self._run(
            "RESET_CONTEXT",
            [self.keys.turns(conversation), self.keys.context_start(conversation)],
            [],
        )

    async def delete_conversation(self, conversation: str) -> None:
        ids = await self._run(
            "DELETE_CONVERSATION",
            [
                self.keys.conversation_answers(conversation),
                self.keys.turns(conversation),
                self.keys.context_start(conversation),
                self.keys.unfinished,
                self.keys.expiries,
            ],
            self.keys.lua_prefixes(),
        )
        for answer_id in ids:
            self._changed(answer_id)

    # -- small keyed values ---------------------------------------------------------------
    async def kv_get(self, key: str) -> str | None:
        with self._errors():
            value, expires = await self.client.hmget(self.keys.value(key), ["v", "x"])
        if value is None or (expires is not None and float(expires) <= self._clock()):
            return None
        return str(value)

    async def kv_set(self, key: str, value: str, ttl: float | None = None) -> None:
        name = self.keys.value(key)
        with self._errors():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(name)
                if ttl is None:
                    pipe.hset(name, "v", value)
                    pipe.zrem(self.keys.expiries, name)
                else:
                    expires = self._clock() + ttl
                    pipe.hset(name, mapping={"v": value, "x": _num(expires)})
                    pipe.pexpire(name, _ms(ttl))
                    pipe.zadd(self.keys.expiries, {name: expires})
                await pipe.execute()

    async def kv_delete(self, key: str) -> None:
        name = self.keys.value(key)
        with self._errors():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(name)
                pipe.zrem(self.keys.expiries, name)
                await pipe.execute()

    async def incr(self, key: str, ttl: float) -> int:
        now = self._clock()
        try:
            count = await self._run(
                "INCR",
                [self.keys.value(key), self.keys.expiries],
                [_num(now), _num(now + ttl), _ms(ttl)],
            )
        except StoreError as exc:
            if isinstance(exc.__cause__, ResponseError):
                raise StoreError(f"value of {key!r} is not a counter") from None
            raise
        return int(count)

    def lock(self, name: str, ttl: float = 30.0) -> AbstractAsyncContextManager[None]:
        return self._lock(name, ttl)

    @contextlib.asynccontextmanager
    async def _lock(self, name: str, ttl: float) -> AsyncIterator[None]:
        key = self.keys.lock(name)

        async def try_acquire(owner: str) -> bool:
            now = self._clock()
            taken = await self._run(
                "LOCK_ACQUIRE",
                [key, self.keys.expiries],
                [owner, _num(now), _num(now + ttl), _ms(ttl)],
            )
            return bool(taken)

        async def release(owner: str) -> None:
            await self._run(
                "LOCK_RELEASE", [key, self.keys.expiries], [owner, self.keys.lock_channel(name)]
            )

        async with (
            self._subscribed(self.keys.lock_channel(name)),
            hold_lock(self._lock_feed, name, try_acquire, release, self._poll),
        ):
            yield

    def lease(self, name: str, ttl: float) -> AbstractAsyncContextManager[None]:
        """``lock(name, ttl)`` renewed every ``ttl / 3`` seconds for as long as it is held.

        Not part of the Store protocol: Redis workers hold a conversation's lease for as long
        as they answer it. A holder that dies frees it ``ttl`` seconds after its last renewal.
        Should a renewal find the lease lost (this process stalled past ``ttl``, or Redis
        forgot it), the body is cancelled and ``StoreError`` raised: someone else may hold
        it now.
        """
        return self._lease(name, ttl)

    @contextlib.asynccontextmanager
    async def _lease(self, name: str, ttl: float) -> AsyncIterator[None]:
        key = self.keys.lock(name)
        owners: list[str] = []

        async def try_acquire(owner: str) -> bool:
            now = self._clock()
            taken = await self._run(
                "LOCK_ACQUIRE",
                [key, self.keys.expiries],
                [owner, _num(now), _num(now + ttl), _ms(ttl)],
            )
            if taken:
                owners.append(owner)
            return bool(taken)

        async def release(owner: str) -> None:
            await self._run(
                "LOCK_RELEASE", [key, self.keys.expiries], [owner, self.keys.lock_channel(name)]
            )

        body = asyncio.current_task()
        assert body is not None
        lost = asyncio.Event()

        async def renew() -> None:
            while True:
                await asyncio.sleep(ttl / 3)
                now = self._clock()
                try:
                    kept = await self._run(
                        "LOCK_RENEW",
                        [key, self.keys.expiries],
                        [owners[-1], _num(now), _num(now + ttl), _ms(ttl)],
                    )
                except StoreError as exc:
                    log.warning("lease %s not renewed (%s); trying again", name, exc)
                    continue
                if not kept:
                    log.error("lease %s was lost; stopping its holder", name)
                    lost.set()
                    body.cancel()
                    return

        async with (
            self._subscribed(self.keys.lock_channel(name)),
            hold_lock(self._lock_feed, name, try_acquire, release, self._poll),
        ):
            renewer = asyncio.create_task(renew(), name=f"lease:{name}")
            try:
                yield
            except asyncio.CancelledError:
                if lost.is_set() and body.uncancel() == 0:
                    raise StoreError(f"lease {name} lost while held") from None
                raise
            finally:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer

    # -- housekeeping ---------------------------------------------------------------------
    async def purge_expired(self) -> int:
        deleted = 0
        while True:
            removed, visited = await self._run(
                "PURGE",
                [self.keys.expiries, self.keys.unfinished],
                [*self.keys.lua_prefixes(), _num(self._clock()), _PURGE_BATCH],
            )
            deleted += int(removed)
            if int(visited) < _PURGE_BATCH:
                return deleted
