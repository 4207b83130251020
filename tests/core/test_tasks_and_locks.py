"""The task supervisor and per-conversation locks."""

from __future__ import annotations

import asyncio
import logging

import pytest

from chatgate.core.locks import KeyedLocks
from chatgate.core.tasks import SupervisorClosed, TaskSupervisor


async def test_supervisor_keeps_tasks_until_they_finish() -> None:
    supervisor = TaskSupervisor()
    release = asyncio.Event()
    task = supervisor.spawn(release.wait(), name="waiter")
    assert supervisor.active == 1
    release.set()
    await task
    await asyncio.sleep(0)
    assert supervisor.active == 0


async def test_drain_waits_for_quick_tasks_and_cancels_slow_ones() -> None:
    supervisor = TaskSupervisor()
    finished: list[str] = []

    async def quick() -> None:
        await asyncio.sleep(0.01)
        finished.append("quick")

    async def slow() -> None:
        await asyncio.sleep(60)
        finished.append("slow")

    supervisor.spawn(quick(), name="quick")
    slow_task = supervisor.spawn(slow(), name="slow")
    cancelled = await supervisor.drain(0.2)
    assert finished == ["quick"]
    assert cancelled == 1
    assert slow_task.cancelled()


async def test_spawn_after_drain_is_refused() -> None:
    supervisor = TaskSupervisor()
    await supervisor.drain(0.1)

    async def nothing() -> None:
        return None

    with pytest.raises(SupervisorClosed):
        supervisor.spawn(nothing(), name="late")


async def test_a_failing_task_is_logged_not_lost(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = TaskSupervisor()

    async def boom() -> None:
        raise RuntimeError("kaboom")

    task = supervisor.spawn(boom(), name="boom")
    with caplog.at_level(logging.ERROR):
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
    assert "boom" in caplog.text


async def test_slots_bound_concurrency() -> None:
    supervisor = TaskSupervisor(limit=2)
    running = 0
    peak = 0

    async def work() -> None:
        nonlocal running, peak
        async with supervisor.slot():
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(supervisor.spawn(work(), name=f"w{i}") for i in range(6)))
    assert peak == 2


async def test_keyed_lock_runs_one_key_in_arrival_order() -> None:
    locks = KeyedLocks()
    order: list[int] = []

    async def job(n: int) -> None:
        async with locks.hold("conv"):
            await asyncio.sleep(0.01 * (3 - n))
            order.append(n)

    await asyncio.gather(*(job(n) for n in range(3)))
    assert order == [0, 1, 2]
    assert len(locks) == 0


async def test_keyed_lock_lets_different_keys_run_together() -> None:
    locks = KeyedLocks()
    inside = asyncio.Event()
    both = asyncio.Event()

    async def first() -> None:
        async with locks.hold("a"):
            inside.set()
            await asyncio.wait_for(both.wait(), 1)

    async def second() -> None:
        await inside.wait()
        async with locks.hold("b"):
            both.set()

    await asyncio.gather(first(), second())
