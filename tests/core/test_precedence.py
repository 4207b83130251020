"""Precedence: background work waits while webhooks load the loop, and never stops for good."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from chatgate.core.precedence import Precedence


class Ticks:
    """A ``sleep`` for the releaser that returns only when the test says a tick passed."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[None] = asyncio.Queue()
        self.asked = 0

    async def __call__(self, seconds: float) -> None:
        self.asked += 1
        await self._queue.get()

    def tick(self) -> None:
        self._queue.put_nowait(None)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def start_units(precedence: Precedence, count: int) -> tuple[list[int], list[asyncio.Task[None]]]:
    """``count`` units of background work, each noting its number once it may start."""
    started: list[int] = []

    async def unit(n: int) -> None:
        await precedence.turn()
        started.append(n)

    return started, [asyncio.create_task(unit(n)) for n in range(count)]


def busy_precedence(clock: list[float], ticks: Ticks) -> Precedence:
    precedence = Precedence(busy_lag=0.01, recent=0.25, clock=lambda: clock[0], sleep=ticks)
    precedence.arrived()
    precedence.note_lag(0.05)
    return precedence


async def test_background_work_passes_at_once_when_no_webhook_arrived_lately() -> None:
    clock = [100.0]
    precedence = Precedence(clock=lambda: clock[0])
    precedence.note_lag(1.0)  # a loop late from background work alone
    assert not precedence.busy
    await asyncio.wait_for(precedence.turn(), 1)


async def test_background_work_passes_at_once_while_webhooks_arrive_on_a_prompt_loop() -> None:
    clock = [100.0]
    precedence = Precedence(clock=lambda: clock[0])
    precedence.arrived()
    precedence.note_lag(0.001)
    assert not precedence.busy
    await asyncio.wait_for(precedence.turn(), 1)
    await precedence.aclose()


async def test_while_webhooks_load_the_loop_one_unit_goes_per_tick_oldest_first() -> None:
    clock, ticks = [100.0], Ticks()
    precedence = busy_precedence(clock, ticks)
    started, units = start_units(precedence, 4)
    await settle()
    assert started == [0]  # the first goes at once, the rest wait for ticks
    assert precedence.waiting == 3
    ticks.tick()
    await settle()
    assert started == [0, 1]
    ticks.tick()
    await settle()
    assert started == [0, 1, 2]
    await precedence.aclose()
    await asyncio.gather(*units)
    assert started == [0, 1, 2, 3]


async def test_everything_waiting_goes_once_webhooks_stop_arriving() -> None:
    clock, ticks = [100.0], Ticks()
    precedence = busy_precedence(clock, ticks)
    started, units = start_units(precedence, 5)
    await settle()
    assert started == [0]
    clock[0] += 1.0  # no message for longer than `recent`
    ticks.tick()
    await asyncio.wait_for(asyncio.gather(*units), 1)
    assert started == [0, 1, 2, 3, 4]
    await precedence.aclose()


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    clock, ticks = [100.0], Ticks()
    precedence = busy_precedence(clock, ticks)
    started, (first, second, third) = start_units(precedence, 3)
    await settle()
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    ticks.tick()
    await settle()
    assert started == [0, 2]
    await asyncio.gather(first, third)
    await precedence.aclose()


async def test_the_probe_sees_a_loop_kept_busy_while_messages_queued_up() -> None:
    precedence = Precedence(probe_every=0.005)
    precedence.arrived()
    await asyncio.sleep(0.001)  # the probe's timer is set
    time.sleep(0.05)  # noqa: ASYNC251 (the point: hold the loop, the timer fires this late)
    precedence.arrived()  # meanwhile messages came in
    precedence.arrived()
    await settle()  # the overdue timer fires first thing
    assert precedence.busy
    await precedence.aclose()


async def test_a_loop_made_late_while_messages_only_trickle_in_is_not_busy() -> None:
    precedence = Precedence(probe_every=0.005)
    precedence.arrived()
    await asyncio.sleep(0.001)
    time.sleep(0.05)  # noqa: ASYNC251 (late, by background work say)
    precedence.arrived()  # one message in the probe's whole sleep: no queue of them
    await settle()
    assert not precedence.busy
    await precedence.aclose()


async def test_later_starts_background_work_at_once_when_nothing_waits_and_the_loop_is_free() -> (
    None
):
    precedence = Precedence()
    started: list[str] = []
    precedence.later(started.append, "job")
    assert started == ["job"]
    assert precedence.waiting == 0
    await precedence.aclose()


async def test_later_queues_work_while_webhooks_load_the_loop_in_turn_with_waiters() -> None:
    clock, ticks = [100.0], Ticks()
    precedence = busy_precedence(clock, ticks)
    started: list[str] = []

    async def waiter() -> None:
        await precedence.turn()
        started.append("waiter")

    precedence.later(started.append, "first")
    task = asyncio.create_task(waiter())
    await settle()
    precedence.later(started.append, "third")
    assert started == ["first"]  # the first goes at once, the rest wait for ticks
    assert precedence.waiting == 2
    for expected in (["first", "waiter"], ["first", "waiter", "third"]):
        ticks.tick()
        await settle()
        assert started == expected
    await task
    await precedence.aclose()


async def test_work_that_fails_to_start_is_logged_and_the_next_unit_still_gets_its_turn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, ticks = [100.0], Ticks()
    precedence = busy_precedence(clock, ticks)
    started: list[str] = []

    def broken(what: str) -> None:
        raise RuntimeError(f"cannot start {what}")

    precedence.later(broken, "first")
    precedence.later(started.append, "next")
    await settle()
    assert "background work failed to start" in caplog.text
    assert started == []
    ticks.tick()
    await settle()
    assert started == ["next"]
    await precedence.aclose()


async def test_release_all_starts_every_waiting_unit_at_once_while_still_busy() -> None:
    clock, ticks = [100.0], Ticks()
    precedence = busy_precedence(clock, ticks)
    started: list[int] = []
    for n in range(5):
        precedence.later(started.append, n)
    assert started == []  # the releaser has not run yet
    precedence.release_all()
    assert started == [0, 1, 2, 3, 4]
    assert precedence.waiting == 0
    await precedence.aclose()


async def test_once_the_loop_is_free_waiting_units_go_a_slice_at_a_time_with_turns_between() -> (
    None
):
    clock, ticks = [100.0], Ticks()
    precedence = Precedence(
        busy_lag=0.01, recent=0.25, release_slice=0.0, clock=lambda: clock[0], sleep=ticks
    )
    precedence.arrived()
    precedence.note_lag(0.05)
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_turns())
    started_on: list[int] = []
    for _ in range(6):
        precedence.later(lambda _: started_on.append(turns), None)
    await settle()
    assert len(started_on) == 1  # the first went while the loop was loaded
    clock[0] += 5.0  # no webhook lately: the loop is free
    ticks.tick()
    await asyncio.wait_for(_until(lambda: len(started_on) == 6), 1)
    # A zero-length slice lets one unit through per loop turn: the loop ran in between.
    assert len(set(started_on)) == 6
    counter.cancel()
    await precedence.aclose()


async def _until(condition: Callable[[], bool]) -> None:
    # Loop turns are what is counted here: polling on each turn is the point.
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0)
