"""In-process change notification, and the waiting loops every store backend builds on it."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from chatgate.store.base import AnswerRecord

ReadAnswer = Callable[[str], Awaitable[AnswerRecord | None]]


class ChangeFeed:
    """Wakes every task listening on a key when ``notify(key)`` is called.

    A listener registers *before* it reads the state it waits on, so a change made between
    its read and its wait still wakes it: no change is missed. Keys nobody listens on cost
    nothing.
    """

    def __init__(self) -> None:
        self._listeners: dict[str, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def listen(self, key: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._listeners.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            events = self._listeners.get(key)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._listeners[key]

    def notify(self, key: str) -> None:
        for event in self._listeners.get(key, ()):
            event.set()

    def notify_all(self) -> None:
        """Wake every listener: changes may have been missed (a lost connection, say)."""
        for events in self._listeners.values():
            for event in events:
                event.set()

    def __len__(self) -> int:
        """How many keys have listeners right now."""
        return len(self._listeners)


async def _sleep(changed: asyncio.Event, seconds: float | None) -> None:
    """Return when ``changed`` is set or ``seconds`` pass (``None``: never), whichever first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await changed.wait()


async def wait_finished(
    feed: ChangeFeed, read: ReadAnswer, answer_id: str, within: float, poll: float | None
) -> AnswerRecord | None:
    """``Store.wait_answer`` for any backend: wait ``within`` seconds at most.

    ``poll`` re-reads the record that often even without a notification, for changes made
    where ``feed`` cannot see them (another process); ``None`` trusts the feed alone.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        with feed.listen(answer_id) as changed:
            record = await read(answer_id)
            remaining = deadline - loop.time()
            if record is None or record.finished or remaining <= 0:
                return record
            await _sleep(changed, remaining if poll is None else min(remaining, poll))


async def watch_changes(
    feed: ChangeFeed, read: ReadAnswer, answer_id: str, poll: float | None
) -> AsyncIterator[AnswerRecord]:
    """``Store.watch_answer`` for any backend; ``poll`` as for ``wait_finished``.

    Changes made while the consumer is busy are coalesced: it gets the latest record next.
    """
    last: AnswerRecord | None = None
    while True:
        with feed.listen(answer_id) as changed:
            record = await read(answer_id)
            if record is not None and record == last:
                await _sleep(changed, poll)
                continue
        if record is None:
            return
        yield record
        if record.finished:
            return
        last = record


@contextlib.asynccontextmanager
async def hold_lock(
    feed: ChangeFeed,
    name: str,
    try_acquire: Callable[[str], Awaitable[bool]],
    release: Callable[[str], Awaitable[None]],
    poll: float,
) -> AsyncIterator[None]:
    """``Store.lock`` for any backend, given its atomic take-if-free and release-if-mine.

    Both callables get this holder's random owner token. A waiter wakes at once on a release
    in this process and otherwise retries every ``poll`` seconds: a lock held elsewhere, or
    one whose holder died, frees without any notification here.
    """
    owner = secrets.token_hex(16)
    while True:
        with feed.listen(name) as released:
            try:
                acquired = await try_acquire(owner)
            except BaseException:
                # Cancelled while the backend was taking it: the lock may be ours already,
                # and nobody would release it before its ttl.
                with contextlib.suppress(Exception):
                    await release(owner)
                raise
            if acquired:
                break
            await _sleep(released, poll)
    try:
        yield
    finally:
        await release(owner)
        feed.notify(name)
