"""Backends under test and the helpers the store tests share.

To add a backend, add its name to ``BACKENDS`` (and to ``SHARED_BACKENDS`` if two store
objects see the same data, as two processes would) and build it in ``make_backend``. The
Redis backend runs against the session's Redis (``tests/redis_server.py``), each test under
a key prefix of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus, Store, Turn
from chatgate.store.memory import MemoryStore
from chatgate.store.redis import RedisStore
from chatgate.store.sqlite import SqliteStore

BACKENDS = ["memory", "sqlite", "redis"]
SHARED_BACKENDS = ["sqlite", "redis"]

# Short, so tests that depend on polling (expiry, other processes) stay quick.
POLL = 0.02
# An upper bound for things that should happen at once; generous so a slow machine passes.
WITHIN = 5.0
# Long enough for a wrongly admitted waiter to get in, several polls over.
SETTLE = POLL * 10


class FakeClock:
    """A clock that moves only when told to: expiry tests need no sleeping."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    """One backend under test, able to make several store objects on the same data."""

    name: str
    clock: FakeClock
    make: Callable[[], Store]
    _opened: list[Store] = field(default_factory=list)

    async def open(self) -> Store:
        store = self.make()
        await store.open()
        self._opened.append(store)
        return store

    async def restart(self, store: Store) -> Store:
        """Close ``store`` and open the data again, as the next process would."""
        await store.close()
        return await self.open()

    async def close_all(self) -> None:
        for store in self._opened:
            await store.close()


def make_backend(
    name: str, clock: FakeClock, tmp_path: Path, *, redis: tuple[str, str] | None = None
) -> Backend:
    """``redis`` is (URL, key prefix) for the Redis backend."""
    if name == "memory":
        # One object: its data lives exactly as long as the object does.
        memory = MemoryStore(clock=clock, poll_interval=POLL)
        return Backend(name, clock, lambda: memory)
    if name == "sqlite":
        path = str(tmp_path / "chatgate.db")
        return Backend(name, clock, lambda: SqliteStore(path, clock=clock, poll_interval=POLL))
    if name == "redis":
        assert redis is not None, "the redis backend needs the redis_url fixture"
        url, prefix = redis
        return Backend(
            name, clock, lambda: RedisStore(url, prefix=prefix, clock=clock, poll_interval=POLL)
        )
    raise AssertionError(f"unknown backend {name}")


CONV = "wechat_mp:gh_app:user-1"
OTHER_CONV = "wechat_mp:gh_app:user-2"


def make_answer(
    answer_id: str,
    *,
    conversation: str = CONV,
    kind: AnswerKind = AnswerKind.LLM,
    status: AnswerStatus = AnswerStatus.QUEUED,
    text: str = "",
    delivered_upto: int = 0,
    expires_at: float | None = None,
    meta: dict[str, str] | None = None,
) -> AnswerRecord:
    return AnswerRecord(
        id=answer_id,
        conversation=conversation,
        dedup_key=f"msg-{answer_id}",
        kind=kind,
        question=f"question {answer_id}",
        page_token=f"token-{answer_id}",
        status=status,
        text=text,
        created_at=1000.0,
        updated_at=1000.0,
        expires_at=expires_at,
        delivered_upto=delivered_upto,
        meta=meta or {},
    )


def make_turns(count: int, *, start: int = 0) -> list[Turn]:
    return [
        Turn(role="user" if i % 2 == 0 else "assistant", content=f"turn {i}", at=1000.0 + i)
        for i in range(start, start + count)
    ]
