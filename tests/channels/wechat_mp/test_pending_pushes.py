"""The list of answers handed to push: each change stored when its call returns, in few writes."""

from __future__ import annotations

import asyncio

import pytest

from chatgate.channels.wechat_mp.push import PendingPushes
from chatgate.errors import StoreError
from chatgate.store.memory import MemoryStore


class CountingStore(MemoryStore):
    """Counts writes of the list; can hold them on a gate or fail the next ones."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.writing = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.failures = 0

    async def kv_set(self, key: str, value: str, ttl: float | None = None) -> None:
        self.writes += 1
        self.writing.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise StoreError("store down")
        await super().kv_set(key, value, ttl)


def pending_on(store: CountingStore) -> PendingPushes:
    pending = PendingPushes(store, ttl=3600)
    pending.BATCH_DELAY = 0.001
    return pending


async def test_each_change_is_stored_when_its_call_returns() -> None:
    store = CountingStore()
    pending = pending_on(store)

    async def add_then_check(answer_id: str) -> None:
        await pending.add(answer_id)
        assert answer_id in await PendingPushes(store, ttl=3600).ids()

    await asyncio.gather(*(add_then_check(f"a{i:03d}") for i in range(300)))
    await asyncio.gather(*(pending.remove(f"a{i:03d}") for i in range(0, 300, 2)))
    assert await pending.ids() == [f"a{i:03d}" for i in range(1, 300, 2)]


async def test_a_burst_of_changes_takes_one_write() -> None:
    store = CountingStore()
    pending = pending_on(store)
    await asyncio.gather(*(pending.add(f"a{i}") for i in range(1000)))
    assert store.writes == 1
    assert len(await pending.ids()) == 1000


async def test_changes_made_during_a_write_go_with_the_next_one() -> None:
    store = CountingStore()
    store.gate = asyncio.Event()
    pending = pending_on(store)
    first = asyncio.create_task(pending.add("a1"))
    await store.writing.wait()
    second = asyncio.create_task(pending.add("a2"))
    removed = asyncio.create_task(pending.remove("a1"))
    await asyncio.sleep(0.01)
    assert not first.done() and not second.done()
    store.gate.set()
    await asyncio.gather(first, second, removed)
    assert store.writes == 2
    assert await pending.ids() == ["a2"]


async def test_a_failed_write_fails_every_change_it_carried_and_the_next_write_works() -> None:
    store = CountingStore()
    store.failures = 1
    pending = pending_on(store)
    results = await asyncio.gather(
        pending.add("a1"), pending.add("a2"), pending.remove("a0"), return_exceptions=True
    )
    assert [type(r) for r in results] == [StoreError, StoreError, StoreError]
    await pending.add("a3")
    assert await pending.ids() == ["a3"]


async def test_a_cancelled_caller_leaves_the_write_to_the_others() -> None:
    store = CountingStore()
    store.gate = asyncio.Event()
    pending = pending_on(store)
    cancelled = asyncio.create_task(pending.add("a1"))
    kept = asyncio.create_task(pending.add("a2"))
    await store.writing.wait()
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    store.gate.set()
    await kept
    assert await pending.ids() == ["a1", "a2"]  # the change was on its way already


async def test_after_the_writer_is_cancelled_later_changes_are_written_again() -> None:
    store = CountingStore()
    pending = pending_on(store)
    pending.BATCH_DELAY = 10.0  # the writer is still waiting for changes when cancelled
    first = asyncio.create_task(pending.add("a1"))
    await asyncio.sleep(0.01)
    assert pending._writer is not None
    pending._writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    pending.BATCH_DELAY = 0.001
    await pending.add("a2")
    assert await pending.ids() == ["a1", "a2"]  # a1's change went with the next write
