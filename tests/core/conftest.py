"""Fixtures for core tests: a memory store, a scripted provider, and the core wired together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from chatgate.core.cache import AnswerCache
from chatgate.core.conversations import Conversations
from chatgate.core.delivery import Delivery, Surface
from chatgate.core.dispatcher import Dispatcher
from chatgate.core.fairness import FairLimiter
from chatgate.core.jobs import AnswerJobs
from chatgate.core.precedence import Precedence
from chatgate.core.router import Router
from chatgate.core.routes import default_router
from chatgate.core.tasks import TaskSupervisor
from chatgate.core.texts import Texts
from chatgate.errors import ProviderError
from chatgate.providers.base import ChatRequest
from chatgate.store.memory import MemoryStore


@dataclass
class Script:
    """How the scripted provider answers one question."""

    chunks: list[str]
    gate: asyncio.Event | None = None  # hold the stream after the first chunk until set
    fail: ProviderError | None = None
    hang: bool = False


@dataclass
class ScriptedProvider:
    """A provider whose answers tests control exactly, and which records every call."""

    name: str = "scripted"
    scripts: dict[str, Script] = field(default_factory=dict)
    calls: list[ChatRequest] = field(default_factory=list)

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        self.calls.append(request)
        question = request.messages[-1].content
        script = self.scripts.get(question, Script([f"answer to {question}"]))
        for index, chunk in enumerate(script.chunks):
            yield chunk
            if index == 0 and script.gate is not None:
                await script.gate.wait()
        if script.hang:
            await asyncio.Event().wait()
        if script.fail is not None:
            raise script.fail

    async def aclose(self) -> None:
        return None

    def questions(self) -> list[str]:
        return [call.messages[-1].content for call in self.calls]


@dataclass
class Core:
    store: MemoryStore
    provider: ScriptedProvider
    supervisor: TaskSupervisor
    jobs: AnswerJobs
    dispatcher: Dispatcher
    delivery: Delivery
    texts: Texts


def build_core(
    store: MemoryStore,
    provider: ScriptedProvider,
    *,
    max_bytes: int = 2048,
    timeout: float = 30.0,
    router: Router | None = None,
    limiter: FairLimiter | None = None,
    cache: AnswerCache | None = None,
    precedence: Precedence | None = None,
) -> Core:
    texts = Texts()
    supervisor = TaskSupervisor(8)
    conversations = Conversations(store, system_prompt="sys", max_turns=20, max_tokens=3000)
    jobs = AnswerJobs(
        store,
        provider,
        conversations,
        supervisor,
        timeout=timeout,
        apology="sorry",
        limiter=limiter,
        cache=cache,
        precedence=precedence,
    )
    root = Router()
    if router is not None:
        root.include(router)
    root.include(default_router(texts))
    dispatcher = Dispatcher(store, root, jobs, answer_ttl=3600)
    delivery = Delivery(store, Surface(max_bytes=max_bytes), texts, answer_ttl=3600)
    return Core(store, provider, supervisor, jobs, dispatcher, delivery, texts)


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def provider() -> ScriptedProvider:
    return ScriptedProvider()


@pytest.fixture
async def core(store: MemoryStore, provider: ScriptedProvider) -> AsyncIterator[Core]:
    c = build_core(store, provider)
    yield c
    await c.supervisor.drain(1.0)
