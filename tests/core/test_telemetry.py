"""What the core reports: tries and messages, model calls, lost answers, the log context."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator

import pytest

from chatgate.app.logs import make_handler
from chatgate.core.conversations import Conversations
from chatgate.core.dispatcher import Dispatcher
from chatgate.core.jobs import AnswerJobs
from chatgate.core.logcontext import current, log_scope
from chatgate.core.messages import Inbound, Kind
from chatgate.core.router import Router
from chatgate.core.routes import default_router
from chatgate.core.tasks import TaskSupervisor
from chatgate.core.telemetry import (
    LOST_RECORD_MISSING,
    MeteredProvider,
    channel_of,
    error_code,
    inline_path,
    try_label,
)
from chatgate.core.texts import Texts
from chatgate.errors import ProviderError, ProviderTimeout
from chatgate.providers.base import ChatMessage, ChatRequest
from chatgate.store.memory import MemoryStore
from tests.core.conftest import Script, ScriptedProvider
from tests.telemetry import RecordingTelemetry


def msg(text: str, n: int, kind: Kind = Kind.TEXT) -> Inbound:
    return Inbound("wechat_mp", "gh_a", "u1", f"msg:{n}", kind, text=text)


def request(question: str) -> ChatRequest:
    return ChatRequest([ChatMessage("user", question)], user="p", conversation="c:a:u")


class Wired:
    def __init__(self, store: MemoryStore, provider: ScriptedProvider, clock: object = None):
        self.telemetry = RecordingTelemetry()
        self.supervisor = TaskSupervisor(8)
        self.provider = MeteredProvider(provider, self.telemetry)
        conversations = Conversations(store, system_prompt="s", max_turns=20, max_tokens=3000)
        self.jobs = AnswerJobs(
            store, self.provider, conversations, self.supervisor, timeout=30, apology="sorry"
        )
        root = Router()
        root.include(default_router(Texts()))
        extra = {} if clock is None else {"clock": clock}
        self.dispatcher = Dispatcher(
            store, root, self.jobs, answer_ttl=3600, telemetry=self.telemetry, **extra
        )


@pytest.fixture
async def wired(store: MemoryStore, provider: ScriptedProvider) -> AsyncIterator[Wired]:
    w = Wired(store, provider)
    yield w
    await w.supervisor.drain(1.0)


async def test_every_try_is_counted_by_number_and_the_message_once_by_kind(wired: Wired) -> None:
    for _ in range(3):
        await wired.dispatcher.accept(msg("q", 1))
    await wired.dispatcher.accept(msg("", 2, Kind.EVENT))
    assert wired.telemetry.count("try_seen") == {
        ("wechat_mp", 1): 2,
        ("wechat_mp", 2): 1,
        ("wechat_mp", 3): 1,
    }
    assert wired.telemetry.count("message_received") == {
        ("wechat_mp", "text"): 1,
        ("wechat_mp", "event"): 1,
    }


async def test_a_claim_whose_record_never_appears_counts_one_lost_answer(
    store: MemoryStore, provider: ScriptedProvider
) -> None:
    ticks = iter(range(0, 10_000, 1))  # each clock reading is a second later: no real waiting
    w = Wired(store, provider, clock=lambda: float(next(ticks)))
    await store.claim_message("wechat_mp:gh_a:msg:7", "ghost", 3600)
    for _ in range(2):
        with pytest.raises(Exception, match="no record"):
            await w.dispatcher.accept(msg("q", 7))
    assert w.telemetry.count("answer_lost") == {("wechat_mp", LOST_RECORD_MISSING): 1}
    await w.supervisor.drain(1.0)


async def test_model_calls_are_reported_with_their_outcome(
    wired: Wired, provider: ScriptedProvider
) -> None:
    provider.scripts["bad"] = Script(["x"], fail=ProviderError("429", retryable=True, status=429))
    provider.scripts["slow"] = Script([], fail=ProviderTimeout())
    assert [c async for c in wired.provider.stream(request("ok"))] == ["answer to ok"]
    for question in ("bad", "slow"):
        with pytest.raises(ProviderError):
            _ = [c async for c in wired.provider.stream(request(question))]
    assert wired.telemetry.count("llm_call") == {
        ("scripted", None): 1,
        ("scripted", "429"): 1,
        ("scripted", "timeout"): 1,
    }
    # "slow" never produced text: two first chunks, not three.
    assert wired.telemetry.count("llm_first_chunk") == {("scripted",): 2}
    assert wired.provider.in_flight == 0


async def test_a_cancelled_model_call_is_reported_cancelled_and_leaves_no_call_in_flight(
    wired: Wired, provider: ScriptedProvider
) -> None:
    provider.scripts["hang"] = Script(["start"], hang=True)
    seen = asyncio.Event()

    async def consume() -> None:
        async for _ in wired.provider.stream(request("hang")):
            seen.set()

    task = asyncio.create_task(consume())
    await seen.wait()
    assert wired.provider.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wired.telemetry.count("llm_call") == {("scripted", "cancelled"): 1}
    assert wired.provider.in_flight == 0


async def test_job_log_lines_name_the_message_the_conversation_and_the_answer(
    wired: Wired, store: MemoryStore
) -> None:
    out = io.StringIO()
    handler = make_handler("text", stream=out)
    logger = logging.getLogger("chatgate.core.jobs")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        ticket = await wired.dispatcher.accept(msg("q", 1))
        await store.wait_answer(ticket.answer.id, 5)
        await wired.supervisor.wait_idle(5)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    done = [line for line in out.getvalue().splitlines() if " done:" in line]
    assert len(done) == 1
    assert "channel=wechat_mp" in done[0] and "message_id=msg:1" in done[0]
    assert "conversation=wechat_mp:gh_a:u1" in done[0]
    assert f"answer_id={ticket.answer.id}" in done[0]
    assert current() == {}  # nothing leaks into the caller's context


def test_log_scope_nests_and_restores() -> None:
    with log_scope(channel="a", message_id="1"):
        with log_scope(message_id="2", conversation=None):
            assert current() == {"channel": "a", "message_id": "2"}
        assert current() == {"channel": "a", "message_id": "1"}
    assert current() == {}
    with pytest.raises(ValueError, match="unknown"), log_scope(text="secret"):
        pass


def test_labels_stay_bounded() -> None:
    assert inline_path(2) == "inline_try_2"
    assert [try_label(n) for n in (1, 5, 6, 99)] == ["1", "5", "6+", "6+"]
    assert channel_of("dingtalk:corp:user:with:colons") == "dingtalk"
    assert error_code(ProviderError("x", status=503)) == "503"
    assert error_code(ProviderError("x", retryable=True)) == "unavailable"
    assert error_code(ProviderError("x")) == "error"
    assert error_code(RuntimeError()) == "unexpected"


async def test_wait_idle_waits_for_tasks_spawned_meanwhile_and_gives_up_at_the_timeout() -> None:
    supervisor = TaskSupervisor(4)
    release = asyncio.Event()

    async def second() -> None:
        await release.wait()

    async def first() -> None:
        await asyncio.sleep(0.01)
        supervisor.spawn(second(), name="second")

    supervisor.spawn(first(), name="first")
    assert await supervisor.wait_idle(0.2) is False  # "second" still waits
    assert supervisor.active == 1
    release.set()
    assert await supervisor.wait_idle(5) is True
    assert supervisor.active == 0
    assert await supervisor.wait_idle(0) is True
