"""Acknowledgements first: background work gives way while webhooks queue up on the loop.

WeChat waits 5 s for each acknowledgement and retries what it does not get in time, so a burst
of messages must not queue behind the answer jobs and pushes of the messages before it (the
problem bolt-python solves by acknowledging before its lazy listeners run). Webhooks and
background work share one event loop, and asyncio runs ready callbacks first come, first
served: without help, a thousand pushes in progress slow every acknowledgement down.

``Precedence`` tells the two apart by two signs: messages keep arriving (channels call
``arrived``; at least ``busy_arrivals`` came while the probe timer slept), and the loop is late
(the timer fires ``busy_lag`` or more after it was due). While both hold, background work
waits in ``turn`` and is let through one unit at a time, at least every ``min_interval``,
oldest first, so it never stops; otherwise it passes at once. A loop made late by background
work alone, or by webhooks that are only waiting (a passive reply held for the answer), does
not slow anything down, nor does a late loop while messages only trickle in.

Work that would wait before it does anything (a new answer job, a push to follow) is handed
over with ``later`` as the callback that starts it and its one argument, rather than started as
a task that waits in ``turn``: the acknowledgement then costs a queue entry instead of a task,
its first step and its suspension. The callback is meant to be one long-lived object (a bound
method made once) and the argument a small one naming what the work is about (an answer's
id, or a tuple of its names), so a burst leaves the garbage collector nothing to track per unit
once collected: no closure, partial, coroutine or record. Young collections, which stall
every acknowledgement in flight, then come that much more rarely, and walk that much less.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

# A loop this late has work queued up (an idle loop fires timers within a millisecond).
BUSY_LAG = 0.002
# Messages arriving while the probe slept (about 5 ms, longer on a late loop): at least this
# many, and they are queueing up, not trickling in. With a loop late by background work
# alone at a steady trickle of messages, the late loop is no sign that webhooks wait.
BUSY_ARRIVALS = 2
# Messages accepted this recently mean webhooks may be what the loop is busy with.
RECENT = 0.25
# While webhooks keep the loop busy, one unit of background work starts at least this often.
MIN_INTERVAL = 0.005
# How often the loop's lateness is measured, while messages arrive.
PROBE_EVERY = 0.005
# Once the loop is free, waiting units go in slices of about this long, each its own loop
# turn: after a burst thousands wait, and starting them in one go held the loop (and the
# acknowledgements that kept arriving) for a tenth of a second.
RELEASE_SLICE = 0.002

_T = TypeVar("_T")
# A unit of background work waiting: a ``turn`` caller's future, or ``later``'s callback.
_Unit = asyncio.Future[None] | Callable[[Any], object]


class Precedence:
    """Lets background work through at once, or, while webhooks load the loop, in a trickle."""

    def __init__(
        self,
        *,
        busy_lag: float = BUSY_LAG,
        busy_arrivals: int = BUSY_ARRIVALS,
        recent: float = RECENT,
        min_interval: float = MIN_INTERVAL,
        probe_every: float = PROBE_EVERY,
        release_slice: float = RELEASE_SLICE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._busy_lag = busy_lag
        self._busy_arrivals = busy_arrivals
        self._recent = recent
        self._min_interval = min_interval
        self._probe_every = probe_every
        self._release_slice = release_slice
        self._clock = clock
        self._sleep = sleep
        self._last_arrival = -float("inf")
        self._arrivals = 0  # since the probe's last reading
        self._crowded = True  # enough arrived during the probe's last sleep (until it says)
        self._lag = 0.0
        # Oldest first: futures of ``turn`` callers, callbacks of ``later``.
        self._waiting: collections.deque[_Unit] = collections.deque()
        # The callbacks' arguments, in the same order: a second queue rather than one of
        # (callback, argument) tuples, each of which the collector would track.
        self._arguments: collections.deque[Any] = collections.deque()
        self._prober: asyncio.Task[None] | None = None
        self._releaser: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """Messages queue up on a late loop: background work should wait."""
        return (
            self._lag >= self._busy_lag
            and self._crowded
            and self._clock() - self._last_arrival < self._recent
        )

    @property
    def waiting(self) -> int:
        """Units of background work waiting for their turn."""
        return len(self._waiting)

    def arrived(self) -> None:
        """A message was accepted (called on the acknowledgement path: cheap)."""
        self._last_arrival = self._clock()
        self._arrivals += 1
        if self._prober is None or self._prober.done():
            self._prober = asyncio.get_running_loop().create_task(
                self._probe(), name="precedence-probe"
            )

    def note_lag(self, seconds: float) -> None:
        """Record how late the loop is (the probe does this; tests may too)."""
        self._lag = seconds

    async def turn(self) -> None:
        """Wait until a unit of background work (an answer job, a push) may start."""
        if not self._waiting and not self.busy:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue(future)
        try:
            await future
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):
                self._waiting.remove(future)
            raise

    def later(self, start: Callable[[_T], object], arg: _T) -> None:
        """Call ``start(arg)`` now if background work may start now, else when its turn comes.

        ``start`` starts a unit of background work (it spawns a task, say) without waiting in
        ``turn`` itself; it runs on the loop, in the order ``turn`` lets units through. An
        exception it raises is logged: the units after it still get their turn.
        """
        if not self._waiting and not self.busy:
            _call(start, arg)
            return
        self._arguments.append(arg)
        self._queue(start)

    def _queue(self, unit: _Unit) -> None:
        self._waiting.append(unit)
        if self._releaser is None or self._releaser.done():
            self._releaser = asyncio.get_running_loop().create_task(
                self._release(), name="precedence-release"
            )

    async def aclose(self) -> None:
        """Stop the probe and let everything waiting through (shutting down)."""
        for task in (self._prober, self._releaser):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.release_all()

    async def _release(self) -> None:
        while self._waiting:
            if not self.busy:
                self._release_slice_of_time()
                await asyncio.sleep(0)  # a loop turn for what arrived meanwhile
                continue
            self._release_one()
            await self._sleep(self._min_interval)

    def _release_slice_of_time(self) -> None:
        until = time.perf_counter() + self._release_slice
        while self._waiting:  # one unit at least, however short the slice
            self._let_through(self._waiting.popleft())
            if time.perf_counter() >= until:
                return

    def _release_one(self) -> None:
        while self._waiting:
            if self._let_through(self._waiting.popleft()):
                return

    def release_all(self) -> None:
        """Let every unit waiting through at once (shutting down: the work starts while the
        grace lasts)."""
        while self._waiting:
            self._let_through(self._waiting.popleft())

    def _let_through(self, unit: _Unit) -> bool:
        """Start one waiting unit; whether there was one to start (a cancelled waiter is not)."""
        if isinstance(unit, asyncio.Future):
            if unit.done():
                return False
            unit.set_result(None)
            return True
        _call(unit, self._arguments.popleft())
        return True

    async def _probe(self) -> None:
        # Runs while messages arrive; the lag it saw last stays, but counts only while recent.
        loop = asyncio.get_running_loop()
        while self._clock() - self._last_arrival < self._recent:
            due = loop.time() + self._probe_every
            self._arrivals = 0
            await asyncio.sleep(self._probe_every)
            self._crowded = self._arrivals >= self._busy_arrivals
            self.note_lag(max(0.0, loop.time() - due))


def _call(start: Callable[[_T], object], arg: _T) -> None:
    try:
        start(arg)
    except Exception:
        log.exception("background work failed to start")
