"""FairLimiter: a cap on holders, with free places handed round-robin across keys."""

from __future__ import annotations

import asyncio

import pytest

from chatgate.core.fairness import FairLimiter


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(10):
        await asyncio.sleep(0)


class Holders:
    """Tasks that take a place under a key, note it, and hold it until released one by one."""

    def __init__(self, limiter: FairLimiter) -> None:
        self.limiter = limiter
        self.order: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def _hold(self, key: str, name: str) -> None:
        async with self.limiter.slot(key):
            self.order.append(name)
            await self.gates[name].wait()

    async def start(self, key: str, name: str) -> None:
        self.gates[name] = asyncio.Event()
        self.tasks[name] = asyncio.create_task(self._hold(key, name))
        await settle()

    async def release(self, name: str) -> None:
        self.gates[name].set()
        await self.tasks[name]
        await settle()


async def test_one_key_s_burst_does_not_starve_keys_that_came_later() -> None:
    holders = Holders(FairLimiter(1))
    await holders.start("busy", "x")
    for name in ("a1", "a2", "a3", "a4"):
        await holders.start("a", name)
    await holders.start("b", "b1")
    await holders.start("c", "c1")
    assert holders.order == ["x"]
    for name in ("x", "a1", "b1", "c1", "a2", "a3", "a4"):
        await holders.release(name)
    # A FIFO semaphore would give x, a1, a2, a3, a4, b1, c1.
    assert holders.order == ["x", "a1", "b1", "c1", "a2", "a3", "a4"]


async def test_within_one_key_waiters_are_served_in_arrival_order() -> None:
    holders = Holders(FairLimiter(1))
    for name in ("first", "second", "third"):
        await holders.start("k", name)
    for name in ("first", "second", "third"):
        await holders.release(name)
    assert holders.order == ["first", "second", "third"]


async def test_never_more_than_the_limit_hold_at_once() -> None:
    limiter = FairLimiter(2)
    holders = Holders(limiter)
    for name in ("a", "b", "c", "d"):
        await holders.start(name, name)
    assert holders.order == ["a", "b"]
    assert (limiter.active, limiter.waiting) == (2, 2)
    await holders.release("a")
    assert holders.order == ["a", "b", "c"] and limiter.active == 2
    for name in ("b", "c", "d"):
        await holders.release(name)
    assert (limiter.active, limiter.waiting) == (0, 0)


async def test_a_cancelled_waiter_gives_up_its_turn_and_leaves_no_trace() -> None:
    limiter = FairLimiter(1)
    holders = Holders(limiter)
    await holders.start("x", "x")
    await holders.start("a", "a1")
    await holders.start("b", "b1")
    holders.tasks["a1"].cancel()
    await settle()
    assert limiter.waiting == 1
    await holders.release("x")
    assert holders.order == ["x", "b1"]
    await holders.release("b1")
    assert (limiter.active, limiter.waiting) == (0, 0)


async def test_a_waiter_cancelled_just_after_its_grant_passes_the_place_on() -> None:
    limiter = FairLimiter(1)
    holders = Holders(limiter)
    await holders.start("x", "x")
    await holders.start("a", "a1")
    await holders.start("b", "b1")
    holders.gates["x"].set()
    await asyncio.sleep(0)  # x leaves and grants a1 its place; a1 has not resumed yet
    holders.tasks["a1"].cancel()
    await settle()
    assert holders.order == ["x", "b1"] and limiter.active == 1
    await holders.release("b1")
    assert limiter.active == 0


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        FairLimiter(0)
