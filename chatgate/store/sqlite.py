"""``SqliteStore``: the Store protocol in one SQLite file, the default (``sqlite:///chatgate.db``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
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

log = logging.getLogger(__name__)

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

# Inline writing operations between checkpoints: an acknowledgement's two writes add about
# ten WAL frames, so this is about SQLite's own default of a checkpoint per 1000 frames.
# (Group commits share pages between writes: fewer frames each, never more.)
_CHECKPOINT_AFTER = 200
# A WAL this long after a checkpoint means writes never paused long enough for it to start
# over (see ``_Checkpoints``): about 32 MiB at the default 4 KiB page. Each forced restart
# holds operations for a few fsyncs and GIL hand-overs (2–20 ms here), so not much lower.
_RESTART_FRAMES = 8000
# Batches of ``_CHECKPOINT_AFTER`` inline writes the thread may fall behind before operations
# wait for it. At full speed a batch is about 20 ms of acknowledgements, and a checkpoint that
# late is common on a busy machine: holding every webhook in flight for it (about 25 ms) was
# most of the acknowledgement's p99. Five batches are about 5000 frames, under a restart.
_HOLD_AFTER_BATCHES = 5

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
    """The worker thread's connection: it waits for locks, migrates, and checkpoints."""
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


def _connect_inline(path: str) -> sqlite3.Connection:
    """The event loop's connection: it never waits and never checkpoints.

    ``busy_timeout = 0``: a lock held by another connection (another process, or the worker
    thread's) is answered with SQLITE_BUSY at once instead of a wait that would stall every
    coroutine; the store then re-runs the operation in the worker thread, which may wait.
    ``wal_autocheckpoint = 0``: a checkpoint copies and fsyncs for milliseconds, so the worker
    thread runs them instead (``_Checkpoints``).
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        # Per connection, not kept in the file: without it this one would fsync every commit.
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_both(path: str, busy_timeout: float) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    # The worker's connection first: it switches to WAL and migrates, waiting on other
    # processes if it must, so the inline connection only ever sees an up-to-date schema.
    conn = _connect(path, busy_timeout)
    try:
        return conn, _connect_inline(path)
    except BaseException:
        conn.close()
        raise


def _busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection holds a lock (any SQLITE_BUSY variant)."""
    return exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


def _close(inline: sqlite3.Connection, conn: sqlite3.Connection) -> None:
    # The last connection to close checkpoints the WAL into the file and removes it: in the
    # worker thread, so off the loop too.
    try:
        inline.close()
    finally:
        conn.close()


class _Worker:
    """One thread that runs calls in the order given and settles their asyncio futures.

    Hand-written instead of a one-thread ``ThreadPoolExecutor``: that costs a
    ``concurrent.futures.Future`` (with its lock and condition) and a chained asyncio future
    per call, a measurable share of a store operation on the acknowledgement path. Between
    calls, and at least every ``period`` seconds when idle, it runs ``chore`` (if set).
    """

    def __init__(self, period: float) -> None:
        self.chore: Callable[[], None] | None = None
        self._period = period
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="chatgate-sqlite", daemon=True)
        self._thread.start()

    def run(self, work: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._calls.put((loop, future, work, args))
        return future

    def post(self, work: Callable[[], None]) -> None:
        """Run ``work`` in turn, with nobody waiting for it: no future, no wake-up of the loop."""
        self._calls.put((None, None, work, ()))

    async def stop(self) -> None:
        """End the thread once the calls given before have run."""
        self._calls.put(None)
        await asyncio.to_thread(self._thread.join)

    def _serve(self) -> None:
        due = time.monotonic() + self._period
        while True:
            try:
                call = self._calls.get(timeout=max(due - time.monotonic(), 0.0))
            except queue.Empty:
                pass
            else:
                if call is None:
                    return
                self._do(*call)
            # Checked after every call too: a steady stream of calls never lets get() time out.
            if time.monotonic() >= due:
                due = time.monotonic() + self._period
                if (chore := self.chore) is not None:
                    self._do(None, None, chore, ())

    @staticmethod
    def _do(
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[Any] | None,
        work: Callable[..., Any],
        args: tuple[Any, ...],
    ) -> None:
        try:
            result = work(*args)
        except BaseException as exc:  # handed to the caller, whatever it is
            if loop is None or future is None:
                # Nobody to hand it to, and the thread must live on for the calls after.
                log.exception("SQLite background work failed")
                return
            outcome: tuple[bool, Any] = (False, exc)
        else:
            if loop is None or future is None:
                return
            outcome = (True, result)
        # RuntimeError: the loop closed meanwhile, and nobody waits any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, future, outcome)


_Call = tuple[
    asyncio.AbstractEventLoop | None,
    "asyncio.Future[Any] | None",
    Callable[..., Any],
    tuple[Any, ...],
]


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.cancelled():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class _Checkpoints:
    """Checkpoints, in the worker thread, the WAL frames that inline writes leave behind.

    The event loop counts its writing operations (``wrote``); the worker thread checkpoints when
    ``_CHECKPOINT_AFTER`` of them have piled up (about SQLite's own 1000-page autocheckpoint)
    or, for a trickle, on its periodic chore. Each counter has one writer thread, so the two
    threads share them without a lock; a stale read only moves a checkpoint a little.

    A PASSIVE checkpoint never holds writers up, but the log only starts over when one has
    copied every frame and no write came after it, which a steady stream of inline writes
    never allows: the WAL would grow for as long as the load lasts. So once it is longer than
    ``_RESTART_FRAMES`` the thread restarts it, with ``restarting`` set meanwhile: operations
    then wait on the loop (``restarted``) for the few milliseconds it takes. Taking the write
    lock every few microseconds instead would starve the checkpoint's lock polling (1, 2,
    5, … ms sleeps), and handing them to the thread would queue them behind it and then have
    them contend with the inline ones for the lock.

    Both only bound the WAL if the thread gets to run, and nothing makes a busy loop thread
    hand it the processor: on a loaded machine the loop outran it by thousands of frames. So
    when ``_HOLD_AFTER_BATCHES`` batches of inline writes wait for a checkpoint, operations
    wait (``held``) until the thread has caught up.
    """

    def __init__(self, conn: sqlite3.Connection, worker: _Worker) -> None:
        self._conn = conn
        self._worker = worker
        self.written = 0  # writing operations made inline; only the loop thread adds
        self._asked = 0  # ``written`` when the loop last posted a checkpoint; loop thread only
        self._done = 0  # ``written`` as of the last checkpoint; worker thread only
        self._stopped = False  # worker thread only
        # Set, and cleared, by the worker thread under ``_lock``; read without it by the loop
        # on every operation (a stale False lets one operation race the restart for the
        # lock: it falls back to the thread if it loses).
        self.restarting = False
        self._lock = threading.Lock()
        self._resumed: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}
        # The checkpoint the loop waits for, while the thread is a batch behind; loop only.
        self.held: asyncio.Future[None] | None = None

    def wrote(self) -> None:
        """Count a writing operation made inline (event loop thread)."""
        self.written += 1
        if self.written - max(self._asked, self._done) < _CHECKPOINT_AFTER:
            return
        # A stale ``_done`` only makes this wait once without need.
        pending = self._asked > self._done
        self._asked = self.written
        if self.written - self._done < _HOLD_AFTER_BATCHES * _CHECKPOINT_AFTER:
            if not pending:  # the one pending checkpoints everything written when it runs
                self._worker.post(self.run)
            return
        held = self.held = self._worker.run(self.run)
        held.add_done_callback(self._caught_up)

    def _caught_up(self, held: asyncio.Future[None]) -> None:
        if self.held is held:
            self.held = None
        if not held.cancelled() and (exc := held.exception()) is not None:
            log.error("SQLite checkpoint failed", exc_info=exc)

    async def ready(self) -> None:
        """Return once no restart is under way and the thread is not behind (event loop)."""
        while True:
            if (held := self.held) is not None:
                # ``wait``, not the future itself: its outcome (even a failure) is the
                # thread's to log, and a cancelled waiter must leave it to the others.
                await asyncio.wait((held,))
            elif self.restarting:
                await self.restarted()
            else:
                return

    async def restarted(self) -> None:
        """Return once the restart under way (if any) is over (event loop thread)."""
        with self._lock:
            if not self.restarting:
                return
            loop = asyncio.get_running_loop()
            event = self._resumed.get(loop)
            if event is None:
                event = self._resumed[loop] = asyncio.Event()
        await event.wait()

    def stop(self) -> None:
        """No more checkpoints (worker thread): the connections are about to close."""
        self._stopped = True
        self._worker.chore = None

    def run(self) -> None:
        """Checkpoint if anything was written inline since the last time (worker thread)."""
        written = self.written
        if self._stopped or written == self._done:
            return
        try:
            _busy_flag, frames, _copied = self._conn.execute(
                "PRAGMA wal_checkpoint(PASSIVE)"
            ).fetchone()
            if frames > _RESTART_FRAMES:
                self._restart()
        except sqlite3.Error as exc:
            # Another process checkpointing, or holding its lock past busy_timeout: the
            # frames stay in the WAL, safe, for the next checkpoint.
            log.warning("SQLite checkpoint put off: %s", exc)
        self._done = written

    def _restart(self) -> None:
        with self._lock:
            self.restarting = True
        try:
            busy, _frames, _copied = self._conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            if not busy:
                # The first write into a restarted log rewrites its header and fsyncs it:
                # this one, here, rather than the next inline write on the loop. One statement,
                # its own transaction: each call into SQLite hands the GIL to the busy loop
                # and waits up to a switch interval (5 ms) to get it back, with operations held.
                _run(self._conn, "UPDATE schema_version SET id = id")
        finally:
            with self._lock:
                self.restarting = False
                resumed, self._resumed = self._resumed, {}
            for loop, event in resumed.items():
                # RuntimeError: that loop closed meanwhile, and nobody waits any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(event.set)


def _atomically(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T]) -> _T:
    """Run ``work`` inside the open transaction, all or nothing (a savepoint)."""
    conn.execute("SAVEPOINT operation")
    try:
        result = work(conn)
    except BaseException:
        conn.execute("ROLLBACK TO operation")
        conn.execute("RELEASE operation")
        raise
    conn.execute("RELEASE operation")
    return result


class _Group:
    """One write transaction for every inline write made in one event-loop iteration.

    A commit costs more than the statements it commits: it writes each page they changed to
    the WAL, a frame at a time, and an acknowledgement's two commits were most of its store
    time. Under load many acknowledgements write in the same iteration, and one commit for all
    of them writes the pages they share (a table's last leaf, the indexes that grow at one
    end) once. The transaction opens with the iteration's first write and commits from a
    callback scheduled then, so it never outlives the iteration after; each writer returns
    once it has committed, so nothing is acknowledged that a crash could still take back.
    Reads on the loop meanwhile see its writes, as they would once it has committed.
    """

    __slots__ = ("_conn", "_open", "_waiters")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._waiters: list[asyncio.Future[None]] = []
        self._open = True

    async def committed(self) -> None:
        """Return once this transaction has committed (``StoreError`` if it failed)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def commit(self) -> None:
        if not self._open:
            return
        self._open = False
        failure: StoreError | None = None
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            failure = StoreError(f"SQLite: commit failed: {exc}")
        for waiter in self._waiters:
            if waiter.done():
                continue  # its writer was cancelled meanwhile: nobody left to tell
            if failure is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(failure)


class SqliteStore:
    """All state in one SQLite file (WAL mode), shared safely by several processes.

    Two connections per store object. Operations run **inline**, on the event loop's thread,
    on a connection that never waits: an operation's statements take 10–40 µs, while handing
    it to a thread and back (future, queue, wake-up, GIL hand-over) cost about 250 µs of CPU,
    which capped the webhook acknowledgement (two operations per message) at well under half
    the memory store's rate. The connection fails at once instead of waiting
    (``busy_timeout = 0``), so it cannot stall the loop: an operation that meets a lock held
    elsewhere (another process, or this object's own thread mid-transaction) is run again in
    the **worker thread**, whose connection waits up to ``busy_timeout`` seconds as before.
    Every operation is atomic (one statement, or one ``BEGIN IMMEDIATE`` transaction), so
    one refused with SQLITE_BUSY left nothing behind and may simply be repeated there.
    Inline writes share one transaction per loop iteration (``_Group``): a commit costs more
    than the statements it commits, and under load many acknowledgements write at once.

    The thread also keeps the work that can take long: opening and migrating, the scans and
    bulk deletes (``heavy``), and WAL checkpoints, which copy pages and fsync for
    milliseconds; the inline connection never checkpoints, and the thread does it off the loop
    after every ``_CHECKPOINT_AFTER`` inline writes or ``checkpoint_interval`` seconds.

    Operations never interleave: inline ones run whole between two awaits, and the thread
    runs its calls one by one. Changes made through this object wake its waiters at once;
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
        checkpoint_interval: float = 1.0,
    ) -> None:
        self._path = path
        self._clock = clock
        self._poll = poll_interval
        self._busy_timeout = busy_timeout
        self._checkpoint_interval = checkpoint_interval
        self._inline: sqlite3.Connection | None = None  # the event loop's
        self._conn: sqlite3.Connection | None = None  # the worker thread's
        self._worker: _Worker | None = None
        self._checkpoints: _Checkpoints | None = None
        self._group: _Group | None = None  # the inline write transaction open, if any
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
            worker = _Worker(self._checkpoint_interval)
            try:
                # In the thread: migrating may wait for another process's lock.
                conn, inline = await worker.run(_connect_both, self._path, self._busy_timeout)
            except sqlite3.Error as exc:
                await worker.stop()
                raise StoreError(f"cannot open SQLite database {self._path!r}: {exc}") from exc
            except BaseException:
                await worker.stop()
                raise
            checkpoints = _Checkpoints(conn, worker)
            worker.chore = checkpoints.run
            self._inline, self._conn, self._worker = inline, conn, worker
            self._checkpoints = checkpoints

    async def close(self) -> None:
        async with self._lifecycle:
            inline, conn, worker = self._inline, self._conn, self._worker
            checkpoints = self._checkpoints
            self._inline = self._conn = self._worker = self._checkpoints = None
            if inline is None or conn is None or worker is None or checkpoints is None:
                return
            if self._group is not None:
                self._commit(self._group)  # the writes of this iteration, before closing
            # Operations submitted before this run first: inline ones are over already, and
            # the worker keeps the order of the rest. A checkpoint under way finishes before
            # ``stop``; operations that waited for its restart wake before ``stop``'s result
            # does, and run (or join the worker's queue) before the connections close.
            try:
                await worker.run(checkpoints.stop)
                await worker.run(_close, inline, conn)
            finally:
                await worker.stop()

    async def ping(self) -> None:
        await self._call(lambda conn: _rows(conn, "SELECT 1"))

    async def _call(self, work: Callable[[sqlite3.Connection], _T], *, heavy: bool = False) -> _T:
        """Run ``work``, an operation that only reads, inline (or in the thread if ``heavy``
        or it meets a lock); SQLite errors become ``StoreError``."""
        return await self._run(work, heavy=heavy, writes=False)

    async def _write(
        self,
        work: Callable[[sqlite3.Connection], _T],
        *,
        heavy: bool = False,
        several: bool = False,
        settle: bool = True,
    ) -> _T:
        """Run ``work``, an operation that writes, all or nothing; return once it is committed
        (unless not ``settle``: inline, then, it returns once it is in the group transaction).

        Inline, it joins this loop iteration's group transaction (``_Group``); in the thread
        (``heavy``, or the lock is held elsewhere) it is a transaction of its own.
        ``several``: it runs more than one writing statement, kept all or none by a savepoint
        (one statement that fails leaves nothing behind by itself).
        """
        return await self._run(work, heavy=heavy, writes=True, several=several, settle=settle)

    async def _run(
        self,
        work: Callable[[sqlite3.Connection], _T],
        *,
        heavy: bool,
        writes: bool,
        several: bool = False,
        settle: bool = True,
    ) -> _T:
        inline, conn, worker, checkpoints = (
            self._inline,
            self._conn,
            self._worker,
            self._checkpoints,
        )
        if inline is None or conn is None or worker is None or checkpoints is None:
            raise StoreError("the SQLite store is not open")
        if not heavy:
            if checkpoints.restarting or checkpoints.held is not None:
                await checkpoints.ready()
            group = self._group
            if writes and group is None:
                group = self._begin(inline)
            if group is not None or not writes:
                changes = inline.total_changes
                try:
                    result = _atomically(inline, work) if several else work(inline)
                except sqlite3.Error as exc:
                    if group is not None or not _busy(exc):
                        raise StoreError(f"SQLite: {exc}") from exc
                    # A read refused whole (see the class docstring): the thread may wait.
                else:
                    if inline.total_changes != changes:
                        checkpoints.wrote()
                        if group is not None and settle:
                            await group.committed()
                    return result
        try:
            if writes:
                return await worker.run(_in_transaction, conn, work)
            return await worker.run(work, conn)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite: {exc}") from exc

    def _begin(self, inline: sqlite3.Connection) -> _Group | None:
        """Open this iteration's group transaction; ``None`` if another holds the lock."""
        try:
            inline.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if _busy(exc):
                return None
            raise StoreError(f"SQLite: {exc}") from exc
        group = self._group = _Group(inline)
        asyncio.get_running_loop().call_soon(self._commit, group)
        return group

    def _commit(self, group: _Group) -> None:
        if self._group is group:
            self._group = None
        group.commit()

    # -- message claims -------------------------------------------------------------------
    async def claim_message(
        self, dedup_key: str, answer_id: str, ttl: float, *, then_write: bool = False
    ) -> str | None:
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

        # With ``then_write``, the claim joins this iteration's group transaction and the
        # caller returns at once: the record written next commits in the same transaction or
        # a later one, and commits go in order. Until then the transaction's write lock
        # keeps other processes from reading past the claim, so none can claim the message
        # twice; if the commit fails, the record's write fails with it and nothing was
        # acknowledged.
        return await self._write(claim, settle=not then_write)

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
            seq = await self._write(insert)
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
        changed = await self._write(
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
        rows = await self._write(lambda conn: _rows(conn, _UPDATE_ANSWER, params))
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

        changed, rows = await self._write(mark)
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
            ),
            heavy=True,
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
            ),
            several=True,
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
        await self._write(
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

        for row in await self._write(delete, heavy=True):
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
        await self._write(
            lambda conn: _run(
                conn,
                "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, expires_at),
            )
        )

    async def kv_delete(self, key: str) -> None:
        await self._write(lambda conn: _run(conn, "DELETE FROM kv WHERE key = ?", (key,)))

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
            taken = await self._write(
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
            await self._write(
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

        answers, purged = await self._write(purge, heavy=True)
        for row in answers:
            self._answer_feed.notify(row["id"])
        return purged
