"""Live updates of an answer page: Server-Sent Events fed by ``Store.watch_answer``.

Each event carries the page's whole view of the answer (status, elapsed time, rendered
HTML), so a client that reconnects, or misses events, is right again with the next one.
Changes are coalesced: a stream sends at most one event per ``min_interval``, whatever the
token rate, and always the latest state. A stream ends after the final event, after
``lifetime`` (the browser reconnects by itself, so one connection never pins a server that
wants to stop), or at once on ``close()``. Comments keep idle connections alive through
proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from chatgate.errors import StoreError
from chatgate.store.base import AnswerRecord, Store

log = logging.getLogger(__name__)

Describe = Callable[[AnswerRecord], Mapping[str, Any]]


def sse_event(data: Mapping[str, Any]) -> str:
    """One SSE ``message`` event; JSON has no raw newlines, so one ``data:`` line suffices."""
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


class _Latest:
    """The newest record a watcher has seen and not yet sent; older ones are dropped."""

    def __init__(self) -> None:
        self.record: AnswerRecord | None = None
        self.ended = False
        self.wake = asyncio.Event()

    def put(self, record: AnswerRecord) -> None:
        self.record = record
        self.wake.set()

    def end(self) -> None:
        self.ended = True
        self.wake.set()

    def take(self) -> AnswerRecord | None:
        record, self.record = self.record, None
        if not self.ended:
            self.wake.clear()
        return record


class LiveAnswers:
    """Serves the event streams of answer pages and can end them all at once."""

    def __init__(
        self,
        store: Store,
        *,
        min_interval: float = 0.25,
        keepalive: float = 15.0,
        lifetime: float = 25.0,
        retry_ms: int = 1000,
    ) -> None:
        self._store = store
        self._min_interval = min_interval
        self._keepalive = keepalive
        self._lifetime = lifetime
        self._retry_ms = retry_ms
        self._streams: set[_Latest] = set()
        self._closed = False

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def close(self) -> None:
        """End every open stream now, and refuse new ones (the server is stopping)."""
        self._closed = True
        for latest in self._streams:
            latest.end()

    async def events(self, answer_id: str, describe: Describe) -> AsyncIterator[str]:
        """The SSE body for one answer page: ``describe`` turns each record into an event."""
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + self._lifetime
        latest = _Latest()
        if self._closed:
            latest.end()
        self._streams.add(latest)
        pump = asyncio.create_task(self._pump(answer_id, latest), name=f"live:{answer_id}")
        try:
            yield f"retry: {self._retry_ms}\n\n"
            while True:
                remaining = ends_at - loop.time()
                if remaining <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, self._keepalive)):
                        await latest.wake.wait()
                if self._closed:
                    return
                record = latest.take()
                if record is None:
                    if latest.ended:
                        return
                    if ends_at > loop.time():
                        yield ": keepalive\n\n"
                    continue
                yield sse_event(describe(record))
                if record.finished:
                    return
                await asyncio.sleep(self._min_interval)
        finally:
            self._streams.discard(latest)
            pump.cancel()

    async def _pump(self, answer_id: str, latest: _Latest) -> None:
        try:
            async for record in self._store.watch_answer(answer_id):
                latest.put(record)
        except StoreError:
            log.warning("live updates of answer %s stopped: store error", answer_id, exc_info=True)
        finally:
            latest.end()
