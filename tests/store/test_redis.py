"""What only the Redis store promises: pub/sub wake-ups, key names and expiries, reconnecting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from chatgate.errors import StoreError
from chatgate.store.base import AnswerRecord, AnswerStatus
from chatgate.store.redis import GRACE, RedisStore
from chatgate.store.redis_feed import Subscriptions
from tests.redis_server import RedisServer, started_server, unique_prefix
from tests.store.support import CONV, SETTLE, WITHIN, make_answer, make_turns


@pytest.fixture
async def deaf_pair(redis_url: str, redis_prefix: str) -> AsyncIterator[list[RedisStore]]:
    """Two store objects on the same data that never poll: only pub/sub can wake them."""
    stores = [RedisStore(redis_url, prefix=redis_prefix, poll_interval=3600) for _ in range(2)]
    for store in stores:
        await store.open()
    yield stores
    for store in stores:
        await store.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def test_a_finish_written_by_another_store_wakes_the_waiter_through_pubsub(
    deaf_pair: list[RedisStore],
) -> None:
    writer, reader = deaf_pair
    await writer.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
    waiter = asyncio.create_task(reader.wait_answer("a1", timeout=3600))
    await asyncio.sleep(SETTLE)
    assert not waiter.done()
    await writer.update_answer("a1", status=AnswerStatus.DONE, text="final")
    async with asyncio.timeout(WITHIN):
        record = await waiter
    assert record is not None and record.text == "final"


async def test_streamed_text_reaches_a_watcher_of_another_store_chunk_by_chunk(
    deaf_pair: list[RedisStore],
) -> None:
    writer, reader = deaf_pair
    await writer.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
    watch = reader.watch_answer("a1")
    async with asyncio.timeout(WITHIN):
        assert (await anext(watch)).text == ""
        for expected in ("你", "你好", "你好！"):
            await writer.append_answer_text("a1", expected[-1])
            assert (await anext(watch)).text == expected
        await writer.update_answer("a1", status=AnswerStatus.DONE)
        assert (await anext(watch)).finished
    await watch.aclose()  # type: ignore[attr-defined]


async def test_a_waiter_for_the_finish_does_not_read_the_record_again_per_streamed_chunk(
    deaf_pair: list[RedisStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, reader = deaf_pair
    await writer.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
    reads = 0
    read = reader.get_answer

    async def counted(answer_id: str) -> AnswerRecord | None:
        nonlocal reads
        reads += 1
        return await read(answer_id)

    monkeypatch.setattr(reader, "get_answer", counted)
    waiter = asyncio.create_task(reader.wait_answer("a1", timeout=3600))
    await asyncio.sleep(SETTLE)
    for _ in range(20):
        await writer.append_answer_text("a1", "字")
    await asyncio.sleep(SETTLE)
    assert not waiter.done()
    await writer.update_answer("a1", status=AnswerStatus.DONE)
    async with asyncio.timeout(WITHIN):
        record = await waiter
    assert record is not None and record.text == "字" * 20
    assert reads <= 3  # once at the start, once at the finish (and one spare)


async def test_a_lock_released_by_another_store_wakes_its_waiter_through_pubsub(
    deaf_pair: list[RedisStore],
) -> None:
    first, second = deaf_pair
    entered = asyncio.Event()

    async def enter() -> None:
        async with second.lock("token-refresh"):
            entered.set()

    async with first.lock("token-refresh"):
        waiter = asyncio.create_task(enter())
        await asyncio.sleep(SETTLE)
        assert not entered.is_set()
    async with asyncio.timeout(WITHIN):
        await waiter


async def test_every_key_is_under_the_prefix_and_every_temporary_key_expires(
    redis_url: str, redis_prefix: str, raw: aioredis.Redis
) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    await store.open()
    try:
        now = store.clock()
        await store.claim_message("msg-a1", "a1", ttl=600)
        await store.create_answer(make_answer("a1", expires_at=now + 600))
        await store.append_answer_text("a1", "x")
        await store.append_turns(CONV, make_turns(2))
        await store.reset_context(CONV)
        await store.kv_set("token", "abc", ttl=600)
        await store.kv_set("forever", "x")
        await store.incr("rate", ttl=600)
        lock = store.lock("held", ttl=600)
        await lock.__aenter__()
        ttls = {key: await raw.pttl(key) for key in await raw.keys(redis_prefix + "*")}
        await lock.__aexit__(None, None, None)
    finally:
        await store.close()

    names = {key[len(redis_prefix) :]: ttl for key, ttl in ttls.items()}
    temporary = {
        "claim:msg-a1",
        "answer-claims:a1",
        "answer:a1",
        "answer-text:a1",
        "page:token-a1",
        f"conv-answers:{CONV}",
        "kv:token",
        "kv:rate",
        "lock:held",
    }
    kept = {
        f"turns:{CONV}",
        f"context:{CONV}",
        "kv:forever",
        "answer-seq",
        "expiries",
        "unfinished",
    }
    assert set(names) == temporary | kept
    for name in temporary:
        assert 600_000 < names[name] <= (600 + GRACE) * 1000, name
    for name in kept:
        assert names[name] == -1, name
    # Nothing is left behind under other names: all keys start with the prefix.
    assert all(key.startswith(redis_prefix) for key in ttls)


async def test_stores_with_different_prefixes_share_nothing(redis_url: str) -> None:
    prefixes = [unique_prefix(), unique_prefix()]
    stores = [RedisStore(redis_url, prefix=p) for p in prefixes]
    for store in stores:
        await store.open()
    try:
        assert await stores[0].claim_message("msg-1", "a", ttl=60) is None
        assert await stores[1].claim_message("msg-1", "b", ttl=60) is None
        await stores[0].kv_set("k", "zero")
        assert await stores[1].kv_get("k") is None
    finally:
        for store, prefix in zip(stores, prefixes, strict=True):
            await store.client.delete(*await store.client.keys(prefix + "*"))
            await store.close()


async def test_waits_leave_no_subscription_behind_once_they_linger_out(
    redis_url: str, redis_prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix, poll_interval=3600)
    await store.open()
    try:
        subs = store._subs
        assert isinstance(subs, Subscriptions)
        subs._linger = 0.05
        await store.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
        await store.wait_answer("a1", timeout=0.01)
        watch = store.watch_answer("a1")
        await anext(watch)
        await watch.aclose()  # type: ignore[attr-defined]
        for _ in range(int(WITHIN / 0.05)):
            if not len(subs):
                break
            await asyncio.sleep(0.05)
        assert len(subs) == 0
        assert len(store._answer_feed) == 0
        assert len(store._status_feed) == 0
    finally:
        await store.close()


async def test_opening_a_store_where_no_redis_listens_raises_store_error() -> None:
    from tests.e2e.harness import free_port

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreError, match="cannot reach Redis"):
        await store.open()


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of this test's own, to restart (its data is lost: it never saves)."""
    with started_server() as server:
        yield server


@pytest.mark.slow
async def test_the_store_rides_out_a_redis_restart_during_idle(own_server: RedisServer) -> None:
    writer = RedisStore(own_server.url, poll_interval=3600)
    reader = RedisStore(own_server.url, poll_interval=3600)
    await writer.open()
    await reader.open()
    try:
        await writer.kv_set("before", "x")
        await reader.wait_answer("nothing", timeout=0.01)  # pub/sub in use before the restart

        own_server.kill()
        await asyncio.sleep(0.5)
        own_server.start()
        await asyncio.sleep(1.5)  # idle: nobody touches Redis until after it is back

        assert await writer.kv_get("before") is None  # it kept nothing: a new, empty server
        assert await writer.claim_message("msg-1", "a1", ttl=60) is None
        await writer.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
        waiter = asyncio.create_task(reader.wait_answer("a1", timeout=3600))
        await asyncio.sleep(SETTLE)
        assert not waiter.done()
        await writer.update_answer("a1", status=AnswerStatus.DONE, text="after the restart")
        async with asyncio.timeout(WITHIN):
            record = await waiter
        assert record is not None and record.text == "after the restart"
    finally:
        await writer.close()
        await reader.close()


@pytest.mark.slow
async def test_a_reconnect_makes_waiters_read_again(own_server: RedisServer) -> None:
    writer = RedisStore(own_server.url, poll_interval=3600)
    reader = RedisStore(own_server.url, poll_interval=3600)
    await writer.open()
    await reader.open()
    try:
        await writer.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
        waiter = asyncio.create_task(reader.wait_answer("a1", timeout=3600))
        await asyncio.sleep(SETTLE)
        # A change whose notification is lost: written without PUBLISH, as if it had been
        # published while the reader's connection was down.
        client = writer.client
        await client.hset(writer.keys.answer("a1"), "status", AnswerStatus.DONE.value)
        await client.set(writer.keys.answer_text("a1"), "ok")
        await client.save()  # the restarted server loads this snapshot
        await asyncio.sleep(SETTLE)
        assert not waiter.done()

        own_server.kill()
        await asyncio.sleep(0.5)
        own_server.start()

        async with asyncio.timeout(WITHIN * 2):
            record = await waiter
        assert record is not None and record.finished and record.text == "ok"
    finally:
        await writer.close()
        await reader.close()


async def test_a_lease_is_renewed_while_held_and_its_body_stopped_when_it_is_lost(
    redis_url: str, redis_prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix, poll_interval=0.05)
    other = RedisStore(redis_url, prefix=redis_prefix, poll_interval=0.05)
    await store.open()
    await other.open()
    try:
        entered = asyncio.Event()

        async def contender() -> None:
            async with other.lease("answering:c1", ttl=0.6):
                entered.set()

        with pytest.raises(StoreError, match="lost"):
            async with store.lease("answering:c1", ttl=0.6):
                waiter = asyncio.create_task(contender())
                await asyncio.sleep(1.5)  # well past the ttl: renewals keep it
                assert not entered.is_set()
                # Redis forgets it (a failover, say): the next renewal finds it gone.
                await store.client.delete(store.keys.lock("answering:c1"))
                await asyncio.sleep(5)  # cancelled before this ends
        async with asyncio.timeout(WITHIN):
            await waiter
    finally:
        await store.close()
        await other.close()


async def test_unfinished_in_lists_a_conversations_unfinished_model_answers_up_to_a_seq(
    redis_url: str, redis_prefix: str
) -> None:
    from chatgate.store.base import AnswerKind
    from tests.store.support import OTHER_CONV

    store = RedisStore(redis_url, prefix=redis_prefix)
    await store.open()
    try:
        done = AnswerStatus.DONE
        await store.create_answer(make_answer("done", status=done, text="x"))
        running = await store.create_answer(make_answer("running", status=AnswerStatus.RUNNING))
        await store.create_answer(make_answer("fetch", kind=AnswerKind.FETCH))
        queued = await store.create_answer(make_answer("queued"))
        await store.create_answer(make_answer("theirs", conversation=OTHER_CONV))
        await store.create_answer(make_answer("later"))

        upto_queued = await store.unfinished_in(CONV, queued.seq)
        assert [a.id for a in upto_queued] == ["running", "queued"]
        assert [a.id for a in await store.unfinished_in(CONV, running.seq)] == ["running"]
        await store.update_answer("running", status=AnswerStatus.FAILED, text="sorry")
        assert [a.id for a in await store.unfinished_in(CONV, queued.seq)] == ["queued"]
    finally:
        await store.close()
