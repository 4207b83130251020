"""Background-task supervisor: every task referenced, concurrency bounded, drained on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class SupervisorClosed(RuntimeError):
    """Raised when a task is spawned after shutdown began."""


class TaskSupervisor:
    """Owns the background tasks of one process.

    ``spawn`` keeps a strong reference to every task (an unreferenced task can be garbage
    collected mid-flight) and logs a task's unexpected exception instead of losing it.
    ``slot()`` bounds how many expensive sections (provider calls) run at once; it is a
    separate step from ``spawn`` so a task can first wait for its turn in a conversation
    without holding a slot. ``drain`` stops new work, waits up to a grace period, then
    cancels what is left.
    """

    def __init__(self, limit: int = 64) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(limit)
        self._closed = False

    @property
    def active(self) -> int:
        return len(self._tasks)

    def slot(self) -> asyncio.Semaphore:
        return self._slots

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        if self._closed:
            coro.close()
            raise SupervisorClosed(f"not starting {name}: shutting down")
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("task %s failed", task.get_name(), exc_info=exc)

    async def wait_idle(self, within: float) -> bool:
        """Wait until no task is left (tasks spawned meanwhile too), at most ``within`` s.

        Unlike ``drain`` this refuses nothing and cancels nothing. Returns whether idle.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self._tasks:
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=left)
        return True

    async def drain(self, grace: float) -> int:
        """Refuse new tasks, wait ``grace`` seconds for running ones, cancel the rest.

        Returns the number of tasks that had to be cancelled.
        """
        self._closed = True
        pending = set(self._tasks)
        if not pending:
            return 0
        _, still = await asyncio.wait(pending, timeout=grace)
        for task in still:
            task.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)
        return len(still)
