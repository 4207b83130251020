"""Answer jobs and the provider: the fair concurrency cap, provider state, and failure logs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from chatgate.core.conversations import Conversations, provider_state_key
from chatgate.core.fairness import FairLimiter
from chatgate.core.messages import Inbound, Kind
from chatgate.errors import ProviderError
from chatgate.providers.base import ChatRequest
from chatgate.store.memory import MemoryStore
from tests.core.conftest import Script, ScriptedProvider, build_core


def msg(text: str, n: int, user: str) -> Inbound:
    return Inbound("wechat_mp", "gh_a", user, f"msg:{n}", Kind.TEXT, text=text)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


class GatedProvider(ScriptedProvider):
    """Each call waits for its question's gate; records how many calls run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[str, asyncio.Event] = {}
        self.running = 0
        self.most = 0

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        self.calls.append(request)
        question = request.messages[-1].content
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.gates.setdefault(question, asyncio.Event()).wait()
            yield f"answer to {question}"
        finally:
            self.running -= 1

    async def finish(self, question: str) -> None:
        self.gates.setdefault(question, asyncio.Event()).set()
        await settle()


async def test_the_cap_bounds_provider_calls_and_serves_users_in_turn(
    store: MemoryStore,
) -> None:
    provider = GatedProvider()
    core = build_core(store, provider, limiter=FairLimiter(1))
    for n, text in enumerate(("a1", "a2", "a3")):
        await core.dispatcher.accept(msg(text, n, "alice"))
    await core.dispatcher.accept(msg("b1", 10, "bob"))
    await core.dispatcher.accept(msg("c1", 20, "carol"))
    await settle()
    assert provider.questions() == ["a1"]
    for question in ("a1", "b1", "c1", "a2", "a3"):
        await provider.finish(question)
    assert provider.questions() == ["a1", "b1", "c1", "a2", "a3"]
    assert provider.most == 1
    await core.supervisor.drain(1.0)


async def test_without_a_cap_only_the_supervisor_bounds_calls(store: MemoryStore) -> None:
    provider = GatedProvider()
    core = build_core(store, provider)
    for n, user in enumerate(("alice", "bob", "carol")):
        await core.dispatcher.accept(msg(f"q{n}", n, user))
    await settle()
    assert provider.running == 3
    for n in range(3):
        await provider.finish(f"q{n}")
    await core.supervisor.drain(1.0)


async def test_waiting_for_the_cap_does_not_count_against_the_timeout(
    store: MemoryStore,
) -> None:
    provider = ScriptedProvider()
    limiter = FairLimiter(1)
    core = build_core(store, provider, limiter=limiter, timeout=0.5)
    async with limiter.slot("someone else"):
        ticket = await core.dispatcher.accept(msg("queued", 1, "alice"))
        await asyncio.sleep(1.5)  # three timeouts' worth of waiting for a place
        assert provider.calls == []
    record = await store.wait_answer(ticket.answer.id, 5)
    assert record is not None and record.text == "answer to queued"
    await core.supervisor.drain(1.0)


class RememberingProvider(ScriptedProvider):
    """Opens a conversation of its own on the first call, as Dify does, then maybe fails."""

    def __init__(self, scripts: dict[str, Script] | None = None) -> None:
        super().__init__(scripts=scripts or {})
        self.states: list[dict[str, str]] = []  # the state each call was given

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        self.states.append(dict(request.state))
        request.state.setdefault("conversation_id", f"conv-{len(self.states)}")
        async for chunk in super().stream(request):
            yield chunk


async def test_provider_state_is_kept_across_turns_and_forgotten_by_reset(
    store: MemoryStore,
) -> None:
    provider = RememberingProvider()
    core = build_core(store, provider)
    conversation = "wechat_mp:gh_a:alice"
    for n, text in enumerate(("one", "two")):
        ticket = await core.dispatcher.accept(msg(text, n, "alice"))
        await store.wait_answer(ticket.answer.id, 5)
    assert provider.states == [{}, {"conversation_id": "conv-1"}]
    conversations = Conversations(store, system_prompt="", max_turns=20, max_tokens=3000)
    await conversations.reset(conversation)
    assert await store.kv_get(provider_state_key(conversation)) is None
    assert await store.recent_turns(conversation, 10) == []
    ticket = await core.dispatcher.accept(msg("three", 3, "alice"))
    await store.wait_answer(ticket.answer.id, 5)
    assert provider.states[-1] == {}
    await core.supervisor.drain(1.0)


async def test_provider_state_changed_by_a_failed_call_is_kept(store: MemoryStore) -> None:
    provider = RememberingProvider(scripts={"bad": Script(["half"], fail=ProviderError("cut"))})
    core = build_core(store, provider)
    ticket = await core.dispatcher.accept(msg("bad", 1, "alice"))
    await store.wait_answer(ticket.answer.id, 5)
    saved = await store.kv_get(provider_state_key("wechat_mp:gh_a:alice"))
    assert saved == '{"conversation_id": "conv-1"}'
    await core.supervisor.drain(1.0)


async def test_a_provider_failure_is_logged_with_the_answer_and_message_ids(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    provider = ScriptedProvider(scripts={"bad": Script([], fail=ProviderError("HTTP 503"))})
    core = build_core(store, provider)
    with caplog.at_level(logging.WARNING, "chatgate.core.jobs"):
        ticket = await core.dispatcher.accept(msg("bad", 77, "alice"))
        await store.wait_answer(ticket.answer.id, 5)
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1
    assert ticket.answer.id in failures[0] and "msg:77" in failures[0]
    assert "HTTP 503" in failures[0]
    await core.supervisor.drain(1.0)
