"""A concurrency cap that hands free places round-robin across keys: no burst starves others."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FairLimiter:
    """At most ``limit`` holders at once; waiters are served round-robin by key.

    ``asyncio.Semaphore`` serves waiters first come, first served: twenty questions one user
    fired off would all run before a question another user asked a moment later. Here each
    key (a conversation) has its own FIFO queue, and each free place goes to the next key in
    turn, so a waiting key gets a place after at most one holder of every other waiting key.
    Written by hand because neither asyncio nor anyio has a keyed, fair limiter.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._active = 0
        # Keys in serving order; each key's waiters in arrival order.
        self._queues: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def active(self) -> int:
        """How many places are held."""
        return self._active

    @property
    def waiting(self) -> int:
        """How many callers wait for a place."""
        return sum(len(queue) for queue in self._queues.values())

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """Hold one place for the block, waiting for ``key``'s turn when all are taken."""
        await self._acquire(key)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, key: str) -> None:
        if self._active < self.limit and not self._queues:
            self._active += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, deque()).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Granted a place just as it was cancelled: hand the place on.
                self._release()
            else:
                self._forget(key, waiter)
            raise

    def _release(self) -> None:
        self._active -= 1
        self._grant()

    def _grant(self) -> None:
        while self._active < self.limit and self._queues:
            key, queue = self._queues.popitem(last=False)
            waiter = queue.popleft()
            if queue:
                self._queues[key] = queue  # to the back of the round
            if waiter.done():  # cancelled while queued
                continue
            waiter.set_result(None)
            self._active += 1

    def _forget(self, key: str, waiter: asyncio.Future[None]) -> None:
        queue = self._queues.get(key)
        if queue is None:
            return
        try:
            queue.remove(waiter)
        except ValueError:
            return
        if not queue:
            del self._queues[key]
