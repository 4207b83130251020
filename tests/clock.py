"""Controllable clocks for tests that must move time on without sleeping."""

from __future__ import annotations

import time


class FrozenClock:
    """Time stands still until a test moves it."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ShiftedClock:
    """Real time plus a jump a test can add to: deadlines inside one request still tick
    normally, while between messages the test can skip minutes."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
