"""Events: welcome on subscribe, data deleted on unsubscribe, menu clicks routed as text."""

from __future__ import annotations

from chatgate.core.commands import Commands
from chatgate.core.conversations import Conversations
from chatgate.core.decisions import Ask, Reply, Silent
from chatgate.core.events import Events, MenuClicks
from chatgate.core.rules import parse_rules
from chatgate.core.texts import Texts
from chatgate.store.base import Turn
from chatgate.store.memory import MemoryStore
from tests.core.conftest import ScriptedProvider
from tests.core.feature_support import (
    CONVERSATION,
    build_feature_core,
    event,
    feature_router,
    final,
    message,
)


async def test_subscribe_is_welcomed_and_an_empty_welcome_shows_nothing(
    store: MemoryStore,
) -> None:
    assert await Events(store, welcome="hi!").router().resolve(event("subscribe")) == Reply("hi!")
    assert await Events(store, welcome="").router().resolve(event("subscribe")) == Silent()


async def test_unsubscribe_deletes_the_conversation_and_every_per_user_value(
    store: MemoryStore, provider: ScriptedProvider
) -> None:
    forgotten: list[str] = []

    async def forget(conversation: str) -> None:
        forgotten.append(conversation)

    events = Events(store, welcome="hi", forget=[forget])
    core = build_feature_core(store, provider, routers=[events.router()])
    await final(core, message("a private question", 1))
    await final(core, message("a private question", 2, user="someone-else"))
    assert await store.history(CONVERSATION)

    assert (await final(core, event("unsubscribe", n=3))).text == ""
    assert await store.history(CONVERSATION) == []
    left = await store.conversation_answers(CONVERSATION)
    assert all(a.question == "" and a.text == "" for a in left)  # only the silent ack
    assert forgotten == [CONVERSATION]
    assert await store.history("wechat_mp:gh_a:someone-else")  # other users keep theirs
    await core.supervisor.drain(1.0)


async def test_other_events_are_acknowledged_silently(store: MemoryStore) -> None:
    router = feature_router(routers=[Events(store, welcome="hi").router()])
    for name in ("SCAN", "VIEW", "LOCATION", "TEMPLATESENDJOBFINISH"):
        assert await router.resolve(event(name)) == Silent()


async def test_a_menu_click_is_routed_as_the_text_it_maps_to(store: MemoryStore) -> None:
    book = parse_rules(
        {
            "rule": [{"exact": "营业时间", "reply": "9 to 5"}],
            "menu": {"HOURS": "营业时间", "HELP": "/help", "ASK": "讲个笑话"},
        }
    )
    conversations = Conversations(store, system_prompt="", max_turns=20, max_tokens=3000)
    commands = Commands(conversations=conversations, texts=Texts())
    router = feature_router(
        routers=[commands.router(), book.router()], middleware=[MenuClicks(book.menu)]
    )
    assert await router.resolve(event("CLICK", "HOURS")) == Reply("9 to 5")
    assert await router.resolve(event("CLICK", "HELP")) == Reply(commands.help_text())
    assert await router.resolve(event("CLICK", "ASK")) == Ask("讲个笑话")
    assert await router.resolve(event("CLICK", "UNMAPPED")) == Silent()


async def test_the_unsubscribed_users_turns_are_gone_even_with_a_reset_before(
    store: MemoryStore,
) -> None:
    await store.append_turns(CONVERSATION, [Turn("user", "q"), Turn("assistant", "a")])
    await store.reset_context(CONVERSATION)
    await Events(store, welcome="").forget_user(CONVERSATION)
    assert await store.history(CONVERSATION) == []
    assert await store.recent_turns(CONVERSATION, 10) == []
