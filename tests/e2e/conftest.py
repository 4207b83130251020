"""Fixtures for end-to-end tests: the fake LLM and gateways over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from chatgate.sim.llm import FakeLLM


@dataclass
class LLM:
    sim: FakeLLM
    url: str

    def questions(self) -> list[str]:
        from tests.e2e.harness import user_messages

        return user_messages([c.body for c in self.sim.calls])


@pytest.fixture
async def llm() -> AsyncIterator[LLM]:
    sim = FakeLLM()
    async with sim.serve() as url:
        yield LLM(sim, url)
