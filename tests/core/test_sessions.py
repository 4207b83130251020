"""AI sessions: opened by /chatgpt, renewed by each message, ended by /stop or 300 s of quiet."""

from __future__ import annotations

from pathlib import Path

from chatgate.core.commands import Commands
from chatgate.core.conversations import Conversations
from chatgate.core.decisions import Ask, Fetch, Reply, Silent
from chatgate.core.router import Router
from chatgate.core.rules import parse_rules
from chatgate.core.sessions import SessionGate, Sessions, session_key
from chatgate.core.texts import Texts
from chatgate.store.memory import MemoryStore
from chatgate.store.sqlite import SqliteStore
from tests.clock import FrozenClock
from tests.core.conftest import ScriptedProvider
from tests.core.feature_support import (
    CONVERSATION,
    build_feature_core,
    event,
    feature_router,
    final,
    message,
)

HINT = "send /chatgpt"


async def test_a_session_lasts_ttl_from_the_last_renewal(store: MemoryStore) -> None:
    clock = FrozenClock()
    sessions = Sessions(store, ttl=300, clock=clock)
    assert not await sessions.active(CONVERSATION)
    await sessions.start(CONVERSATION)
    clock.advance(299)
    assert await sessions.touch(CONVERSATION)  # renewed: 300 s from now
    clock.advance(299)
    assert await sessions.active(CONVERSATION)
    clock.advance(2)
    assert not await sessions.active(CONVERSATION)
    assert not await sessions.touch(CONVERSATION)  # an ended session is not revived


async def test_end_and_forget_close_the_session(store: MemoryStore) -> None:
    sessions = Sessions(store, ttl=300, clock=FrozenClock())
    await sessions.start(CONVERSATION)
    assert await sessions.end(CONVERSATION)
    assert not await sessions.end(CONVERSATION)
    await sessions.start(CONVERSATION)
    await sessions.forget(CONVERSATION)
    assert await store.kv_get(session_key(CONVERSATION)) is None


async def test_a_session_survives_a_restart_of_the_store(tmp_path: Path) -> None:
    clock = FrozenClock()
    path = str(tmp_path / "s.db")
    first = SqliteStore(path)
    await first.open()
    await Sessions(first, ttl=300, clock=clock).start(CONVERSATION)
    await first.close()
    second = SqliteStore(path)
    await second.open()
    try:
        assert await Sessions(second, ttl=300, clock=clock).active(CONVERSATION)
    finally:
        await second.close()


def gated(store: MemoryStore, clock: FrozenClock) -> Router:
    sessions = Sessions(store, ttl=300, clock=clock)
    conversations = Conversations(store, system_prompt="", max_turns=20, max_tokens=3000)
    commands = Commands(conversations=conversations, texts=Texts(), sessions=sessions)
    rules = parse_rules({"rule": [{"exact": "营业时间", "reply": "9 to 5"}]})
    return feature_router(
        routers=[commands.router(), rules.router()],
        middleware=[SessionGate(sessions, HINT)],
    )


async def test_outside_a_session_text_gets_keyword_replies_or_the_hint(
    store: MemoryStore, provider: ScriptedProvider
) -> None:
    router = gated(store, FrozenClock())
    assert await router.resolve(message("hello")) == Reply(HINT)
    assert await router.resolve(message("营业时间")) == Reply("9 to 5")
    assert await router.resolve(message("1")) == Fetch()
    assert await router.resolve(event("SCAN")) == Silent()
    assert provider.calls == []


async def test_inside_a_session_text_goes_to_the_model_until_300_quiet_seconds(
    store: MemoryStore, provider: ScriptedProvider
) -> None:
    clock = FrozenClock()
    router = gated(store, clock)
    assert isinstance(await router.resolve(message("/chatgpt")), Reply)
    for _ in range(3):  # each message renews: 3 × 200 s is longer than one TTL
        clock.advance(200)
        assert await router.resolve(message("question")) == Ask("question")
    clock.advance(301)
    assert await router.resolve(message("question")) == Reply(HINT)


async def test_chatgpt_with_a_question_opens_the_session_and_asks(
    store: MemoryStore, provider: ScriptedProvider
) -> None:
    core = build_feature_core(store, provider, root=gated(store, FrozenClock()))
    record = await final(core, message("/chatgpt 你好"))
    assert record.text == "answer to 你好"
    assert provider.questions() == ["你好"]
    await core.supervisor.drain(1.0)


async def test_stop_ends_the_session_for_good(store: MemoryStore) -> None:
    router = gated(store, FrozenClock())
    await router.resolve(message("/chatgpt"))
    await router.resolve(message("/stop"))
    assert await router.resolve(message("question")) == Reply(HINT)
