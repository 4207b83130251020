"""Streamed answer text into the store in coalesced writes: at most one append per interval."""

from __future__ import annotations

import asyncio
import logging

from chatgate.store.base import Store

log = logging.getLogger(__name__)


class TextFlusher:
    """Buffers an answer's streamed chunks; one task appends what gathered, then rests.

    The first chunk is written at once and text never waits longer than ``interval`` (even
    when the model stalls after a chunk), but a fast stream costs one store write per
    interval instead of one per chunk: the store's connection stays free for
    acknowledgements. Only store writes run in the task; the provider's stream stays in the
    caller's task (its cancel scopes must not cross tasks).
    """

    def __init__(self, store: Store, answer_id: str, interval: float) -> None:
        self._store = store
        self._answer_id = answer_id
        self._interval = interval
        self._pending: list[str] = []
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def add(self, chunk: str) -> None:
        """Queue ``chunk`` for the store; raises what made an earlier write fail."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            failure = self._task.exception()
            if failure is not None:
                raise failure
        self._pending.append(chunk)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"text:{self._answer_id}")

    async def stop(self) -> None:
        """Let a write under way finish, then stop; chunks not written yet are dropped.

        The caller writes the whole final text next, so writing the tail first would only
        cost one more store round trip.
        """
        self._stop.set()
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await task
        except Exception:  # the final update writes the whole text anyway
            log.warning("answer %s: writing streamed text failed", self._answer_id, exc_info=True)

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            text = "".join(self._pending)
            self._pending.clear()
            if text:
                await self._store.append_answer_text(self._answer_id, text)
            try:
                async with asyncio.timeout(self._interval):
                    await self._stop.wait()
            except TimeoutError:
                pass
