"""What only the SQLite store promises: its file, its schema, and waking without polling."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from pathlib import Path
from types import TracebackType

import pytest

from chatgate.errors import StoreError
from chatgate.store import sqlite as sqlite_module
from chatgate.store.base import AnswerRecord, AnswerStatus, Turn
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


class _OtherProcess:
    """Another process's connection holding the file's write lock until ``release()``."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._held = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        with closing(sqlite3.connect(self._path, isolation_level=None)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            self._held.set()
            self._release.wait(timeout=60)
            conn.execute("ROLLBACK")

    def release(self) -> None:
        self._release.set()

    async def __aenter__(self) -> _OtherProcess:
        self._thread.start()
        assert await asyncio.to_thread(self._held.wait, WITHIN)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
        await asyncio.to_thread(self._thread.join)


async def _other_coroutine_runs(rounds: int = 50) -> None:
    """Return once another task has run ``rounds`` times: the event loop is not blocked."""
    ran = 0

    async def ticker() -> None:
        nonlocal ran
        for _ in range(rounds):
            ran += 1
            await asyncio.sleep(0)

    await asyncio.create_task(ticker())
    assert ran == rounds


Write = Callable[[SqliteStore], Awaitable[object]]
Check = Callable[[SqliteStore], Awaitable[bool]]


async def _kv_landed(store: SqliteStore) -> bool:
    return await store.kv_get("k") == "v"


async def _claim_landed(store: SqliteStore) -> bool:
    return await store.claim_message("msg-1", "a2", 60) == "a1"


async def _answer_landed(store: SqliteStore) -> bool:
    return await store.get_answer("a1") is not None


WRITES: dict[str, tuple[Write, Check]] = {
    "single statement": (lambda store: store.kv_set("k", "v"), _kv_landed),
    "transaction": (lambda store: store.claim_message("msg-1", "a1", 60), _claim_landed),
    "create_answer": (lambda store: store.create_answer(make_answer("a1")), _answer_landed),
}


@pytest.mark.parametrize("kind", list(WRITES))
async def test_a_write_meeting_another_process_lock_waits_off_the_loop_and_lands_after(
    path: Path, kind: str
) -> None:
    write, landed = WRITES[kind]
    store = SqliteStore(str(path), poll_interval=3600, busy_timeout=60)
    await store.open()
    try:
        async with _OtherProcess(path) as other:
            # WITHIN is only a safety net: a write that waited for the lock on the loop would
            # stall this coroutine for as long as the lock is held (or busy_timeout lasts),
            # and the lock is released only by this coroutine.
            async with asyncio.timeout(WITHIN):
                pending = asyncio.create_task(write(store))
                await _other_coroutine_runs()
                assert not pending.done()
                other.release()
                await pending
        assert await landed(store)
        # And the next write, the lock free again, goes through as usual.
        await store.kv_set("after", "1")
        assert await store.kv_get("after") == "1"
    finally:
        await store.close()


async def test_reads_go_on_while_a_write_waits_for_another_process_lock(path: Path) -> None:
    store = SqliteStore(str(path), poll_interval=3600, busy_timeout=60)
    await store.open()
    try:
        await store.kv_set("old", "1")
        async with _OtherProcess(path) as other:
            pending = asyncio.create_task(store.kv_set("k", "v"))
            await _other_coroutine_runs()
            # The lock is still held (only ``release`` ends it), so these did not wait for it,
            # nor queue behind the write that does.
            async with asyncio.timeout(WITHIN):
                assert await store.kv_get("old") == "1"
                assert await store.kv_get("k") is None
            assert not pending.done()
            other.release()
            async with asyncio.timeout(WITHIN):
                await pending
        assert await store.kv_get("k") == "v"
    finally:
        await store.close()


async def test_a_write_waiting_for_another_process_lock_finishes_before_close(
    path: Path,
) -> None:
    store = SqliteStore(str(path), poll_interval=3600, busy_timeout=60)
    await store.open()
    async with _OtherProcess(path) as other:
        pending = asyncio.create_task(store.kv_set("k", "v"))
        await _other_coroutine_runs()
        closing_ = asyncio.create_task(store.close())
        await _other_coroutine_runs()
        assert not closing_.done()
        other.release()
        async with asyncio.timeout(WITHIN):
            await closing_
    assert pending.done() and pending.exception() is None
    assert _query(path, "SELECT value FROM kv WHERE key = 'k'") == [("v",)]


async def test_a_lock_held_past_busy_timeout_fails_the_write_with_store_error(
    path: Path,
) -> None:
    store = SqliteStore(str(path), poll_interval=3600, busy_timeout=0.05)
    await store.open()
    try:
        async with _OtherProcess(path):
            with pytest.raises(StoreError, match="locked"):
                await store.kv_set("k", "v")
        assert await store.kv_get("k") is None
    finally:
        await store.close()


def _in_database_file(path: Path, copy: Path) -> int:
    """How many kv rows the database file holds without its WAL (-1: caught mid-write)."""
    shutil.copyfile(path, copy)
    try:
        with closing(sqlite3.connect(copy)) as conn:
            return int(conn.execute("SELECT count(*) FROM kv").fetchone()[0])
    except sqlite3.DatabaseError:
        return -1


async def test_a_trickle_of_writes_is_checkpointed_into_the_database_file(
    path: Path, tmp_path: Path
) -> None:
    # Far fewer writes than trigger a checkpoint by count: only the periodic one can copy them.
    store = SqliteStore(str(path), poll_interval=3600, checkpoint_interval=0.05)
    await store.open()
    try:
        for i in range(10):
            await store.kv_set(f"k{i}", "v")
        copy = tmp_path / "copy.db"
        async with asyncio.timeout(WITHIN):
            # Polled: the checkpoint runs in another thread, and nothing says when it is done.
            while _in_database_file(path, copy) != 10:  # noqa: ASYNC110
                await asyncio.sleep(SETTLE)
    finally:
        await store.close()


def _size(path: Path) -> int:
    return path.stat().st_size


async def test_the_wal_stays_bounded_under_a_steady_stream_of_writes_even_if_checkpoints_lag(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small thresholds, so a few thousand writes are a long steady load; no periodic ones.
    monkeypatch.setattr(sqlite_module, "_CHECKPOINT_AFTER", 20)
    monkeypatch.setattr(sqlite_module, "_RESTART_FRAMES", 200)
    # A thread kept off the processor for a while, as on a loaded machine: the loop must not
    # run on ahead of it for the whole load.
    checkpoint, stalls = sqlite_module._Checkpoints.run, [0.5]

    def slow_checkpoint(self: sqlite_module._Checkpoints) -> None:
        if stalls:
            time.sleep(stalls.pop())
        checkpoint(self)

    monkeypatch.setattr(sqlite_module._Checkpoints, "run", slow_checkpoint)
    store = SqliteStore(str(path), poll_interval=3600, checkpoint_interval=3600)
    await store.open()
    wal = Path(f"{path}-wal")
    frame = 24 + _query(path, "PRAGMA page_size")[0][0]  # type: ignore[operator]
    writers, each, biggest = 4, 750, 0

    async def write(writer: int) -> None:
        nonlocal biggest
        for i in range(each):
            await store.kv_set(f"k{writer}-{i}", "v" * 100)
            assert await store.kv_get(f"k{writer}-{i}") == "v" * 100
            # Checkpoints run in the worker thread alongside; give it the GIL now and then.
            await asyncio.sleep(0)
            biggest = max(biggest, _size(wal))

    try:
        await asyncio.gather(*(write(w) for w in range(writers)))
    finally:
        await store.close()
    # Each write adds at least two frames: a WAL never started over would pass 6000.
    assert biggest < 2000 * frame
    assert _query(path, "SELECT count(*) FROM kv") == [(writers * each,)]


async def test_writes_wait_for_a_lagging_checkpoint_only_once_it_is_batches_behind(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "_CHECKPOINT_AFTER", 20)
    monkeypatch.setattr(sqlite_module, "_HOLD_AFTER_BATCHES", 3)
    # The worker thread kept from checkpointing, as a busy machine keeps it off the processor.
    gate, checkpoint = threading.Event(), sqlite_module._Checkpoints.run

    def gated_checkpoint(self: sqlite_module._Checkpoints) -> None:
        gate.wait(WITHIN)
        checkpoint(self)

    monkeypatch.setattr(sqlite_module._Checkpoints, "run", gated_checkpoint)
    store = SqliteStore(str(path), poll_interval=3600, checkpoint_interval=3600)
    await store.open()
    try:
        # A batch or two late is ordinary: the writes go on without waiting.
        async with asyncio.timeout(WITHIN / 2):
            for i in range(59):
                await store.kv_set(f"k{i}", "v")
        # The third batch behind: what comes next waits until the thread has caught up.
        await store.kv_set("k59", "v")
        held = asyncio.create_task(store.kv_set("k60", "v"))
        await asyncio.sleep(SETTLE)
        assert not held.done()
        gate.set()
        async with asyncio.timeout(WITHIN):
            await held
    finally:
        gate.set()
        await store.close()
    assert _query(path, "SELECT count(*) FROM kv") == [(61,)]


def _elsewhere(path: Path, key: str) -> list[tuple[object, ...]]:
    """What another connection (another process) reads of ``key``: committed data only."""
    return _query(path, f"SELECT value FROM kv WHERE key = '{key}'")


async def test_a_write_returns_only_once_another_process_can_read_it(
    deaf_store: SqliteStore, path: Path
) -> None:
    for i in range(5):
        await deaf_store.kv_set(f"k{i}", "v")
        assert _elsewhere(path, f"k{i}") == [("v",)]


async def test_writes_made_in_one_loop_iteration_share_one_commit(
    deaf_store: SqliteStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits: list[int] = []
    commit = sqlite_module._Group.commit

    def counted(self: sqlite_module._Group) -> None:
        commits.append(len(self._waiters))
        commit(self)

    monkeypatch.setattr(sqlite_module._Group, "commit", counted)
    await asyncio.gather(*(deaf_store.kv_set(f"k{i}", "v") for i in range(20)))
    assert commits == [20]
    assert _query(path, "SELECT count(*) FROM kv") == [(20,)]


async def test_a_write_that_fails_leaves_the_others_of_its_commit_in_place(
    deaf_store: SqliteStore, path: Path
) -> None:
    await deaf_store.create_answer(make_answer("a1"))
    duplicate, written = await asyncio.gather(
        deaf_store.create_answer(make_answer("a1")),
        deaf_store.kv_set("k", "v"),
        return_exceptions=True,
    )
    assert isinstance(duplicate, StoreError)
    assert written is None
    assert _elsewhere(path, "k") == [("v",)]


async def test_a_write_of_several_statements_that_fails_leaves_nothing_of_itself(
    deaf_store: SqliteStore, path: Path
) -> None:
    good = Turn(role="user", content="kept", at=1.0)
    bad = Turn(role="user", content=None, at=2.0)  # type: ignore[arg-type]  # NOT NULL
    outcomes = await asyncio.gather(
        deaf_store.append_turns("c1", [good]),
        deaf_store.append_turns("c2", [good, bad]),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], StoreError)
    assert _query(path, "SELECT conversation, content FROM turns") == [("c1", "kept")]


async def test_a_writer_cancelled_while_its_commit_is_pending_leaves_the_others_to_finish(
    deaf_store: SqliteStore, path: Path
) -> None:
    cancelled = asyncio.ensure_future(deaf_store.kv_set("a", "1"))
    others = asyncio.gather(*(deaf_store.kv_set(f"k{i}", "v") for i in range(3)))
    await asyncio.sleep(0)  # all four have written and wait for the commit
    cancelled.cancel()
    await others
    # Cancelled after it had written: its write went with the others.
    assert _elsewhere(path, "a") == [("1",)]
    assert _query(path, "SELECT count(*) FROM kv") == [(4,)]


async def test_close_commits_the_writes_still_waiting_for_their_commit(path: Path) -> None:
    store = SqliteStore(str(path), poll_interval=3600)
    await store.open()
    writes = asyncio.gather(*(store.kv_set(f"k{i}", "v") for i in range(3)))
    await asyncio.sleep(0)  # written, waiting for the commit scheduled for the next iteration
    await store.close()
    await writes
    assert _query(path, "SELECT count(*) FROM kv") == [(3,)]


async def test_a_claim_made_before_a_write_is_committed_with_that_write(
    deaf_store: SqliteStore, path: Path
) -> None:
    assert await deaf_store.claim_message("msg:1", "a1", 60, then_write=True) is None
    assert _query(path, "SELECT count(*) FROM claims") == [(0,)]  # not on its own
    await deaf_store.create_answer(make_answer("a1"))
    assert _query(path, "SELECT answer_id FROM claims") == [("a1",)]


async def test_no_other_process_can_take_a_claim_made_but_not_yet_committed(
    deaf_store: SqliteStore, path: Path
) -> None:
    other = SqliteStore(str(path), poll_interval=3600)
    await other.open()
    try:
        assert await deaf_store.claim_message("msg:1", "a1", 60, then_write=True) is None
        contender = asyncio.ensure_future(other.claim_message("msg:1", "a2", 60))
        await deaf_store.create_answer(make_answer("a1"))
        assert await contender == "a1"
    finally:
        await other.close()
