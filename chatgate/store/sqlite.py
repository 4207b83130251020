"""``SqliteStore``: the Store protocol in one SQLite file, the default (``sqlite:///chatgate.db``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from chatgate.errors import StoreError
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus, Turn
from chatgate.store.sqlite_schema import migrate
from chatgate.store.watch import ChangeFeed, hold_lock, wait_finished, watch_changes

# RETURNING arrived in SQLite 3.35.
_MIN_SQLITE = (3, 35, 0)

_TERMINAL = ", ".join(f"'{s.value}'" for s in AnswerStatus if s.terminal)
_UNFINISHED = ", ".join(f"'{s.value}'" for s in AnswerStatus if not s.terminal)
_ANSWER_COLUMNS = (
    "id, conversation, dedup_key, kind, question, page_token, status, text, error, created_at,"
    " updated_at, finished_at, expires_at, seq, delivered_upto, meta"
)
_TURN_COLUMNS = "role, content, at, answer_id"

_T = TypeVar("_T")

_UPDATE_ANSWER = f"""
    UPDATE answers SET
        status = COALESCE(:status, status),
        text = COALESCE(:text, text),
        error = COALESCE(:error, error),
        meta = CASE WHEN :meta IS NULL THEN meta ELSE json_patch(meta, :meta) END,
        updated_at = :now,
        finished_at = CASE WHEN COALESCE(:status, status) IN ({_TERMINAL})
                           THEN COALESCE(finished_at, :now) ELSE NULL END
    WHERE id = :id
    RETURNING {_ANSWER_COLUMNS}
"""


def _answer(row: sqlite3.Row) -> AnswerRecord:
    return AnswerRecord(
        id=row["id"],
        conversation=row["conversation"],
        dedup_key=row["dedup_key"],
        kind=AnswerKind(row["kind"]),
        question=row["question"],
        page_token=row["page_token"],
        status=AnswerStatus(row["status"]),
        text=row["text"],
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        expires_at=row["expires_at"],
        seq=row["seq"],
        delivered_upto=row["delivered_upto"],
        meta=json.loads(row["meta"]),
    )


def _turn(row: sqlite3.Row) -> Turn:
    return Turn(role=row["role"], content=row["content"], at=row["at"], answer_id=row["answer_id"])


def _run(conn: sqlite3.Connection, sql: str, params: Any = ()) -> int:
    """Execute one writing statement; return how many rows it changed."""
    return conn.execute(sql, params).rowcount


def _rows(conn: sqlite3.Connection, sql: str, params: Any = ()) -> list[sqlite3.Row]:
    # Fetching everything finishes the statement, so no read transaction is left open.
    rows: list[sqlite3.Row] = conn.execute(sql, params).fetchall()
    return rows


def _in_transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T]) -> _T:
    """Run ``work`` as one write transaction: all or nothing, and no other writer in between."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _use_wal(conn: sqlite3.Connection, patience: float) -> None:
    """Switch the file to WAL mode (a no-op once it is), retrying while others hold it."""
    # The switch needs an exclusive lock, and when several connections open a new file at
    # once SQLite answers "locked" at once instead of waiting (waiting could deadlock).
    deadline = time.monotonic() + patience
    while True:
        try:
            _rows(conn, "PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.01)


def _connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {round(busy_timeout * 1000)}")
        _use_wal(conn, busy_timeout)
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


class _Worker:
    """One thread that runs calls in the order given and settles their asyncio futures.

    Hand-written instead of a one-thread ``ThreadPoolExecutor``: that costs a
    ``concurrent.futures.Future`` (with its lock and condition) and a chained asyncio future
    per call, a measurable share of a store operation on the acknowledgement path.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="chatgate-sqlite", daemon=True)
        self._thread.start()

    def run(self, work: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._calls.put((loop, future, work, args))
        return future

    async def stop(self) -> None:
        """End the thread once the calls given before have run."""
        self._calls.put(None)
        await asyncio.to_thread(self._thread.join)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            loop, future, work, args = call
            try:
                result = work(*args)
            except BaseException as exc:  # handed to the caller, whatever it is
                outcome: tuple[bool, Any] = (False, exc)
            else:
                outcome = (True, result)
            # RuntimeError: the loop closed meanwhile, and nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, outcome)


_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.cancelled():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class SqliteStore:
    """All state in one SQLite file (WAL mode), shared safely by several processes.

    One connection per store object, owned by one worker thread: each store operation runs
    its whole statement sequence (and commit) as one call in that thread, so operations never
    interleave and each costs one hop between the event loop and the thread. Across
    processes, write transactions start ``IMMEDIATE`` and wait up to ``busy_timeout`` seconds
    for the file's write lock. Changes made through this object wake its waiters at once;
    changes made by another process are seen by re-reading every ``poll_interval`` seconds.

    Durability: ``synchronous=NORMAL`` in WAL mode keeps every committed write across a
    process crash; only an operating-system crash or power loss can drop the last commits.
    """

    def __init__(
        self,
        path: str,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval: float = 0.25,
        busy_timeout: float = 5.0,
    ) -> None:
        self._path = path
        self._clock = clock
        self._poll = poll_interval
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._worker: _Worker | None = None
        self._lifecycle = asyncio.Lock()
        self._answer_feed = ChangeFeed()
        self._lock_feed = ChangeFeed()

    @property
    def path(self) -> str:
        return self._path

    # -- lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        async with self._lifecycle:
            if self._conn is not None:
                return
            if sqlite3.sqlite_version_info < _MIN_SQLITE:
                raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old: 3.35 or later")
            # One thread, so statements run one operation at a time, in the order submitted.
            worker = _Worker()
            try:
                conn = await worker.run(_connect, self._path, self._busy_timeout)
            except sqlite3.Error as exc:
                await worker.stop()
                raise StoreError(f"cannot open SQLite database {self._path!r}: {exc}") from exc
            except BaseException:
                await worker.stop()
                raise
            self._conn, self._worker = conn, worker

    async def close(self) -> None:
        async with self._lifecycle:
            conn, worker = self._conn, self._worker
            self._conn = self._worker = None
            if conn is None or worker is None:
                return
            # Operations submitted before this run first: the worker keeps their order.
            try:
                await worker.run(conn.close)
            finally:
                await worker.stop()

    async def ping(self) -> None:
        await self._call(lambda conn: _rows(conn, "SELECT 1"))

    async def _call(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` with the connection in its thread; SQLite errors become ``StoreError``."""
        conn, worker = self._conn, self._worker
        if conn is None or worker is None:
            raise StoreError("the SQLite store is not open")
        try:
            return await worker.run(work, conn)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite: {exc}") from exc

    async def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` as one write transaction in the connection's thread."""
        return await self._call(lambda conn: _in_transaction(conn, work))

    # -- message claims -------------------------------------------------------------------
    async def claim_message(self, dedup_key: str, answer_id: str, ttl: float) -> str | None:
        now = self._clock()

        def claim(conn: sqlite3.Connection) -> str | None:
            taken = _run(
                conn,
                "INSERT INTO claims (dedup_key, answer_id, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (dedup_key) DO UPDATE"
                " SET answer_id = excluded.answer_id, expires_at = excluded.expires_at"
                " WHERE claims.expires_at <= ?",
                (dedup_key, answer_id, now + ttl, now),
            )
            if taken:
                return None
            rows = _rows(conn, "SELECT answer_id FROM claims WHERE dedup_key = ?", (dedup_key,))
            return str(rows[0]["answer_id"])

        return await self._write(claim)

    # -- answers --------------------------------------------------------------------------
    async def create_answer(self, record: AnswerRecord) -> AnswerRecord:
        params = (
            record.id,
            record.conversation,
            record.dedup_key,
            record.kind.value,
            record.question,
            record.page_token,
            record.status.value,
            record.text,
            record.error,
            record.created_at,
            record.updated_at,
            record.finished_at,
            record.expires_at,
            record.delivered_upto,
            json.dumps(record.meta),
        )

        def insert(conn: sqlite3.Connection) -> int | None:
            return conn.execute(
                "INSERT INTO answers (id, conversation, dedup_key, kind, question, page_token,"
                " status, text, error, created_at, updated_at, finished_at, expires_at,"
                " delivered_upto, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            ).lastrowid

        try:
            seq = await self._call(insert)
        except StoreError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise StoreError(
                    f"answer {record.id!r} or its page token exists already"
                ) from exc.__cause__
            raise
        assert seq is not None
        self._answer_feed.notify(record.id)
        return record.with_changes(seq=seq, meta=dict(record.meta))

    async def get_answer(self, answer_id: str) -> AnswerRecord | None:
        rows = await self._call(
            lambda conn: _rows(
                conn, f"SELECT {_ANSWER_COLUMNS} FROM answers WHERE id = ?", (answer_id,)
            )
        )
        return _answer(rows[0]) if rows else None

    async def get_answer_by_token(self, page_token: str) -> AnswerRecord | None:
        now = self._clock()
        rows = await self._call(
            lambda conn: _rows(
                conn,
                f"SELECT {_ANSWER_COLUMNS} FROM answers"
                " WHERE page_token = ? AND (expires_at IS NULL OR expires_at > ?)",
                (page_token, now),
            )
        )
        return _answer(rows[0]) if rows else None

    async def append_answer_text(self, answer_id: str, chunk: str) -> None:
        if not chunk:
            return
        now = self._clock()
        # One cheap UPDATE per streamed chunk; a finished answer's text is final.
        changed = await self._call(
            lambda conn: _run(
                conn,
                "UPDATE answers SET text = text || ?, updated_at = ?"
                f" WHERE id = ? AND status NOT IN ({_TERMINAL})",
                (chunk, now, answer_id),
            )
        )
        if changed:
            self._answer_feed.notify(answer_id)

    async def update_answer(
        self,
        answer_id: str,
        *,
        status: AnswerStatus | None = None,
        text: str | None = None,
        error: str | None = None,
        meta: dict[str, str] | None = None,
    ) -> AnswerRecord | None:
        params = {
            "id": answer_id,
            "status": None if status is None else status.value,
            "text": text,
            "error": error,
            "meta": None if meta is None else json.dumps(meta),
            "now": self._clock(),
        }
        rows = await self._call(lambda conn: _rows(conn, _UPDATE_ANSWER, params))
        if not rows:
            return None
        self._answer_feed.notify(answer_id)
        return _answer(rows[0])

    async def mark_delivered(self, answer_id: str, upto: int) -> AnswerRecord | None:
        now = self._clock()

        def mark(conn: sqlite3.Connection) -> tuple[bool, list[sqlite3.Row]]:
            rows = _rows(
                conn,
                "UPDATE answers SET delivered_upto = ?, updated_at = ?"
                f" WHERE id = ? AND delivered_upto < ? RETURNING {_ANSWER_COLUMNS}",
                (upto, now, answer_id, upto),
            )
            if rows:
                return True, rows
            return False, _rows(
                conn, f"SELECT {_ANSWER_COLUMNS} FROM answers WHERE id = ?", (answer_id,)
            )

        changed, rows = await self._call(mark)
        if changed:
            self._answer_feed.notify(answer_id)
        return _answer(rows[0]) if rows else None

    async def wait_answer(self, answer_id: str, timeout: float) -> AnswerRecord | None:  # noqa: ASYNC109
        return await wait_finished(
            self._answer_feed, self.get_answer, answer_id, timeout, self._poll
        )

    def watch_answer(self, answer_id: str) -> AsyncIterator[AnswerRecord]:
        return watch_changes(self._answer_feed, self.get_answer, answer_id, self._poll)

    async def unfinished_answers(self) -> list[AnswerRecord]:
        rows = await self._call(
            lambda conn: _rows(
                conn,
                f"SELECT {_ANSWER_COLUMNS} FROM answers"
                f" WHERE status IN ({_UNFINISHED}) AND kind = ? ORDER BY seq",
                (AnswerKind.LLM.value,),
            )
        )
        return [_answer(row) for row in rows]

    async def conversation_answers(
        self, conversation: str, *, undelivered_only: bool = False, limit: int = 50
    ) -> list[AnswerRecord]:
        if limit <= 0:
            return []
        undelivered = (
            f" AND NOT (status IN ({_TERMINAL}) AND delivered_upto >= length(text))"
            if undelivered_only
            else ""
        )
        rows = await self._call(
            lambda conn: _rows(
                conn,
                f"SELECT {_ANSWER_COLUMNS} FROM answers WHERE conversation = ?{undelivered}"
                " ORDER BY seq DESC LIMIT ?",
                (conversation, limit),
            )
        )
        return [_answer(row) for row in reversed(rows)]

    # -- conversations --------------------------------------------------------------------
    async def append_turns(self, conversation: str, turns: Sequence[Turn]) -> None:
        if not turns:
            return
        params = [(conversation, t.role, t.content, t.at, t.answer_id) for t in turns]
        await self._write(
            lambda conn: conn.executemany(
                "INSERT INTO turns (conversation, role, content, at, answer_id)"
                " VALUES (?, ?, ?, ?, ?)",
                params,
            )
        )

    async def recent_turns(self, conversation: str, limit: int) -> list[Turn]:
        if limit <= 0:
            return []
        rows = await self._call(
            lambda conn: _rows(
                conn,
                f"SELECT {_TURN_COLUMNS} FROM turns WHERE conversation = ? AND id > COALESCE("
                " (SELECT after_turn FROM context_resets WHERE conversation = ?), 0)"
                " ORDER BY id DESC LIMIT ?",
                (conversation, conversation, limit),
            )
        )
        return [_turn(row) for row in reversed(rows)]

    async def history(
        self, conversation: str, *, limit: int = 20, before: float | None = None
    ) -> list[Turn]:
        if limit <= 0:
            return []
        rows = await self._call(
            lambda conn: _rows(
                conn,
                f"SELECT {_TURN_COLUMNS} FROM turns"
                " WHERE conversation = :conversation AND (:before IS NULL OR at < :before)"
                " ORDER BY id DESC LIMIT :limit",
                {"conversation": conversation, "before": before, "limit": limit},
            )
        )
        return [_turn(row) for row in reversed(rows)]

    async def reset_context(self, conversation: str) -> None:
        await self._call(
            lambda conn: _run(
                conn,
                "INSERT INTO context_resets (conversation, after_turn)"
                " VALUES (?, (SELECT COALESCE(MAX(id), 0) FROM turns WHERE conversation = ?))"
                " ON CONFLICT (conversation) DO UPDATE SET after_turn = excluded.after_turn",
                (conversation, conversation),
            )
        )

    async def delete_conversation(self, conversation: str) -> None:
        def delete(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            rows = _rows(conn, "SELECT id FROM answers WHERE conversation = ?", (conversation,))
            _run(
                conn,
                "DELETE FROM claims"
                " WHERE answer_id IN (SELECT id FROM answers WHERE conversation = ?)",
                (conversation,),
            )
            for table in ("answers", "turns", "context_resets"):
                _run(conn, f"DELETE FROM {table} WHERE conversation = ?", (conversation,))
            return rows

        for row in await self._write(delete):
            self._answer_feed.notify(row["id"])

    # -- small keyed values ---------------------------------------------------------------
    async def kv_get(self, key: str) -> str | None:
        now = self._clock()
        rows = await self._call(
            lambda conn: _rows(
                conn,
                "SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (key, now),
            )
        )
        return str(rows[0]["value"]) if rows else None

    async def kv_set(self, key: str, value: str, ttl: float | None = None) -> None:
        expires_at = None if ttl is None else self._clock() + ttl
        await self._call(
            lambda conn: _run(
                conn,
                "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, expires_at),
            )
        )

    async def kv_delete(self, key: str) -> None:
        await self._call(lambda conn: _run(conn, "DELETE FROM kv WHERE key = ?", (key,)))

    async def incr(self, key: str, ttl: float) -> int:
        now = self._clock()

        def count_up(conn: sqlite3.Connection) -> int:
            rows = _rows(conn, "SELECT value, expires_at FROM kv WHERE key = ?", (key,))
            held = rows[0] if rows else None
            if held is None or (held["expires_at"] is not None and held["expires_at"] <= now):
                count, expires_at = 1, now + ttl
            else:
                try:
                    count, expires_at = int(held["value"]) + 1, held["expires_at"]
                except ValueError:
                    raise StoreError(f"value of {key!r} is not a counter") from None
            _run(
                conn,
                "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                (key, str(count), expires_at),
            )
            return count

        return await self._write(count_up)

    def lock(self, name: str, ttl: float = 30.0) -> AbstractAsyncContextManager[None]:
        async def try_acquire(owner: str) -> bool:
            now = self._clock()
            taken = await self._call(
                lambda conn: _run(
                    conn,
                    "INSERT INTO locks (name, owner, expires_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE"
                    " SET owner = excluded.owner, expires_at = excluded.expires_at"
                    " WHERE locks.expires_at <= ?",
                    (name, owner, now + ttl, now),
                )
            )
            return taken == 1

        async def release(owner: str) -> None:
            await self._call(
                lambda conn: _run(
                    conn, "DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner)
                )
            )

        return hold_lock(self._lock_feed, name, try_acquire, release, self._poll)

    # -- housekeeping ---------------------------------------------------------------------
    async def purge_expired(self) -> int:
        now = self._clock()

        def purge(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], int]:
            answers = _rows(
                conn,
                "DELETE FROM answers WHERE expires_at IS NOT NULL AND expires_at <= ? RETURNING id",
                (now,),
            )
            purged = len(answers)
            purged += _run(conn, "DELETE FROM claims WHERE expires_at <= ?", (now,))
            purged += _run(
                conn, "DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
            )
            purged += _run(conn, "DELETE FROM locks WHERE expires_at <= ?", (now,))
            return answers, purged

        answers, purged = await self._write(purge)
        for row in answers:
            self._answer_feed.notify(row["id"])
        return purged
