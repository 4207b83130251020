"""What only the SQLite store promises: its file, its schema, and waking without polling."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from chatgate.errors import StoreError
from chatgate.store.base import AnswerRecord, AnswerStatus
from chatgate.store.sqlite import SqliteStore
from chatgate.store.sqlite_schema import SCHEMA_VERSION
from tests.store.support import SETTLE, WITHIN, make_answer


def _query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "chatgate.db"


@pytest.fixture
async def deaf_store(path: Path) -> AsyncIterator[SqliteStore]:
    """A store that never polls: whatever wakes its waiters is an in-process notification."""
    store = SqliteStore(str(path), poll_interval=3600)
    await store.open()
    yield store
    await store.close()


async def test_a_new_database_records_its_schema_version_and_uses_wal(path: Path) -> None:
    store = SqliteStore(str(path))
    await store.open()
    await store.close()
    assert _query(path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    assert _query(path, "PRAGMA journal_mode") == [("wal",)]


async def test_a_database_from_a_newer_chatgate_is_refused(path: Path) -> None:
    store = SqliteStore(str(path))
    await store.open()
    await store.close()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer"):
        await SqliteStore(str(path)).open()


async def test_two_processes_opening_a_new_file_at_once_both_succeed(path: Path) -> None:
    stores = [SqliteStore(str(path)) for _ in range(4)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        await stores[0].kv_set("k", "v")
        assert await stores[3].kv_get("k") == "v"
        assert _query(path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    finally:
        for store in stores:
            await store.close()


async def test_using_a_store_that_is_not_open_raises_store_error(path: Path) -> None:
    store = SqliteStore(str(path))
    with pytest.raises(StoreError):
        await store.ping()
    with pytest.raises(StoreError):
        await store.get_answer("a1")
    await store.open()
    await store.close()
    with pytest.raises(StoreError):
        await store.kv_get("k")


async def test_a_file_that_cannot_be_opened_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        await SqliteStore(str(tmp_path / "missing-dir" / "chatgate.db")).open()


async def test_every_change_wakes_a_waiting_watcher_without_polling(
    deaf_store: SqliteStore,
) -> None:
    await deaf_store.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
    watch = deaf_store.watch_answer("a1")
    assert (await anext(watch)).text == ""
    changes = [
        lambda: deaf_store.append_answer_text("a1", "chunk"),
        lambda: deaf_store.mark_delivered("a1", 5),
        lambda: deaf_store.update_answer("a1", status=AnswerStatus.DONE),
    ]
    for change in changes:
        # The watcher is already asleep when the change lands: only a notification wakes it.
        following = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(SETTLE)
        assert not following.done()
        await change()
        async with asyncio.timeout(WITHIN):
            record = await following
    assert (record.text, record.delivered_upto, record.finished) == ("chunk", 5, True)


async def test_a_finish_wakes_a_waiter_without_polling(deaf_store: SqliteStore) -> None:
    await deaf_store.create_answer(make_answer("a1", status=AnswerStatus.RUNNING))
    waiter = asyncio.create_task(deaf_store.wait_answer("a1", timeout=3600))
    await asyncio.sleep(SETTLE)
    await deaf_store.update_answer("a1", status=AnswerStatus.DONE, text="final")
    async with asyncio.timeout(WITHIN):
        record: AnswerRecord | None = await waiter
    assert record is not None and record.finished


async def test_a_release_wakes_a_lock_waiter_without_polling(deaf_store: SqliteStore) -> None:
    entered = asyncio.Event()

    async def second() -> None:
        async with deaf_store.lock("job"):
            entered.set()

    async with deaf_store.lock("job"):
        waiter = asyncio.create_task(second())
        await asyncio.sleep(SETTLE)
        assert not entered.is_set()
    async with asyncio.timeout(WITHIN):
        await waiter
