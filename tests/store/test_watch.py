"""The change feed wakes listeners and forgets them: long-running waits leave nothing behind."""

from __future__ import annotations

import asyncio

from chatgate.store.base import AnswerRecord, AnswerStatus
from chatgate.store.memory import MemoryStore
from chatgate.store.watch import ChangeFeed, wait_finished
from tests.store.support import WITHIN, make_answer


async def test_notify_wakes_every_listener_of_the_key_only() -> None:
    feed = ChangeFeed()
    with feed.listen("a") as a1, feed.listen("a") as a2, feed.listen("b") as b:
        feed.notify("a")
        assert a1.is_set() and a2.is_set()
        assert not b.is_set()


async def test_listeners_are_forgotten_when_they_stop_listening() -> None:
    feed = ChangeFeed()
    with feed.listen("a"), feed.listen("a"), feed.listen("b"):
        assert len(feed) == 2
    assert len(feed) == 0
    feed.notify("a")  # nobody listens: nothing to do, nothing kept


async def test_a_change_between_read_and_wait_is_not_missed() -> None:
    feed = ChangeFeed()
    running = make_answer("a1", status=AnswerStatus.RUNNING)
    reads = 0

    async def read(_: str) -> AnswerRecord:
        # The answer finishes right after the first read, before the waiter sleeps.
        nonlocal reads
        reads += 1
        if reads == 1:
            feed.notify("a1")
            return running
        return running.with_changes(status=AnswerStatus.DONE)

    async with asyncio.timeout(WITHIN):
        record = await wait_finished(feed, read, "a1", within=3600, poll=None)
    assert record is not None and record.finished


async def test_timed_out_waits_and_abandoned_watches_leave_no_listeners() -> None:
    store = MemoryStore()
    await store.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
    await store.wait_answer("a1", timeout=0.01)
    watch = store.watch_answer("a1")
    await anext(watch)
    await watch.aclose()  # type: ignore[attr-defined]
    assert len(store._answer_feed) == 0
