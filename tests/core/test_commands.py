"""Commands: a prefix or a Chinese alias, answered inline, ahead of 「1」 and the model."""

from __future__ import annotations

import pytest

from chatgate.core.commands import Command, Commands, parse_command
from chatgate.core.conversations import Conversations
from chatgate.core.decisions import UNHANDLED, Ask, Fetch, Reply
from chatgate.core.jobs import provider_state_key
from chatgate.core.sessions import Sessions
from chatgate.core.texts import Texts
from chatgate.store.base import AnswerKind, Turn
from chatgate.store.memory import MemoryStore
from tests.clock import FrozenClock
from tests.core.conftest import ScriptedProvider
from tests.core.feature_support import CONVERSATION, build_feature_core, final, message

TEXTS = Texts()


@pytest.mark.parametrize(
    ("typed", "command", "args"),
    [
        ("/help", Command.HELP, ""),
        ("  /HELP  ", Command.HELP, ""),
        ("／help", Command.HELP, ""),  # a Chinese keyboard's full-width slash
        ("/help。", Command.HELP, ""),
        ("帮助", Command.HELP, ""),
        ("帮助！", Command.HELP, ""),
        ("/帮助", Command.HELP, ""),
        ("/new", Command.NEW, ""),
        ("/clear", Command.NEW, ""),
        ("清除", Command.NEW, ""),
        ("新对话", Command.NEW, ""),
        ("/new 写一首诗", Command.NEW, "写一首诗"),
        ("/new\n第一行\n第二行", Command.NEW, "第一行\n第二行"),
        ("/stop", Command.STOP, ""),
        ("结束", Command.STOP, ""),
        ("/chatgpt", Command.CHATGPT, ""),
        ("开始", Command.CHATGPT, ""),
        ("/chatgpt 你好", Command.CHATGPT, "你好"),
        ("/history", Command.HISTORY, ""),
        ("历史", Command.HISTORY, ""),
    ],
)
def test_commands_and_aliases_are_recognised(typed: str, command: Command, args: str) -> None:
    invocation = parse_command(typed, "/")
    assert invocation is not None
    assert (invocation.command, invocation.args) == (command, args)


@pytest.mark.parametrize(
    "typed",
    [
        "hello",
        "帮助我写一封信",  # an alias inside a sentence is a question
        "/usr/bin 是什么",  # a path, not a command
        "/开始学习",
        "/ help",
        "//x",
        "1",
        "",
    ],
)
def test_ordinary_text_is_not_a_command(typed: str) -> None:
    assert parse_command(typed, "/") is None


def test_an_unknown_slash_word_is_an_unknown_command() -> None:
    invocation = parse_command("/foo bar", "/")
    assert invocation is not None and invocation.command is None and invocation.word == "foo"


def test_the_prefix_is_configurable() -> None:
    assert parse_command("#help", "#") is not None
    assert parse_command("/help", "#") is None
    assert parse_command("!!new x", "!!") is not None
    assert parse_command("帮助", "#") is not None  # aliases need no prefix


def commands(
    store: MemoryStore, *, sessions: Sessions | None = None, link: str | None = None
) -> Commands:
    async def history_link(conversation: str) -> str | None:
        assert conversation == CONVERSATION
        return link

    conversations = Conversations(store, system_prompt="", max_turns=20, max_tokens=3000)
    return Commands(
        conversations=conversations,
        texts=TEXTS,
        sessions=sessions,
        history_link=history_link if link else None,
    )


async def test_help_lists_every_command_and_alias(store: MemoryStore) -> None:
    always = await commands(store).handle(message("/help"))
    assert isinstance(always, Reply)
    for word in ("/new", "/clear", "清除", "新对话", "/history", "历史", "/help", "帮助", "「1」"):
        assert word in always.text
    assert "/chatgpt" not in always.text  # in always mode there is no session to start
    sessions = Sessions(store, ttl=300)
    in_command_mode = await commands(store, sessions=sessions).handle(message("帮助"))
    assert isinstance(in_command_mode, Reply)
    for word in ("/chatgpt", "开始", "/stop", "结束", "5 分钟"):
        assert word in in_command_mode.text


async def test_help_uses_the_configured_prefix(store: MemoryStore) -> None:
    conversations = Conversations(store, system_prompt="", max_turns=20, max_tokens=3000)
    hashed = Commands(conversations=conversations, texts=TEXTS, prefix="#")
    reply = await hashed.handle(message("#help"))
    assert isinstance(reply, Reply) and "#new" in reply.text and "/new" not in reply.text


async def test_new_forgets_the_context_and_the_provider_state(store: MemoryStore) -> None:
    await store.append_turns(CONVERSATION, [Turn("user", "old"), Turn("assistant", "reply")])
    await store.kv_set(provider_state_key(CONVERSATION), '{"conversation_id": "c1"}')
    assert await commands(store).handle(message("/new")) == Reply(TEXTS.context_reset)
    assert await store.recent_turns(CONVERSATION, 20) == []
    assert await store.kv_get(provider_state_key(CONVERSATION)) is None


async def test_new_with_text_asks_it_in_the_fresh_context(store: MemoryStore) -> None:
    await store.append_turns(CONVERSATION, [Turn("user", "old"), Turn("assistant", "reply")])
    assert await commands(store).handle(message("/new 写一首诗")) == Ask("写一首诗")
    assert await store.recent_turns(CONVERSATION, 20) == []


async def test_chatgpt_and_stop_open_and_close_a_session_in_command_mode(
    store: MemoryStore,
) -> None:
    sessions = Sessions(store, ttl=300, clock=FrozenClock())
    handler = commands(store, sessions=sessions)
    say = handler.say
    assert await handler.handle(message("/stop")) == Reply(say(TEXTS.session_not_active))
    assert await handler.handle(message("/chatgpt")) == Reply(say(TEXTS.session_started))
    assert await sessions.active(CONVERSATION)
    assert await handler.handle(message("结束")) == Reply(say(TEXTS.session_stopped))
    assert not await sessions.active(CONVERSATION)
    assert await handler.handle(message("/chatgpt 你好")) == Ask("你好")
    assert await sessions.active(CONVERSATION)


async def test_in_always_mode_chatgpt_and_stop_explain_the_ai_is_always_on(
    store: MemoryStore,
) -> None:
    handler = commands(store)
    always_on = Reply(handler.say(TEXTS.session_always_on))
    assert await handler.handle(message("/chatgpt")) == always_on
    assert await handler.handle(message("/stop")) == always_on
    assert await handler.handle(message("/chatgpt 你好")) == Ask("你好")


async def test_history_replies_with_the_link_or_says_the_page_is_not_set_up(
    store: MemoryStore,
) -> None:
    with_link = await commands(store, link="https://bot.example/h/tok").handle(message("历史"))
    assert with_link == Reply(TEXTS.history_link.format(link="https://bot.example/h/tok"))
    without = await commands(store).handle(message("/history"))
    assert without == Reply(TEXTS.history_unavailable)


async def test_unknown_command_gets_a_hint(store: MemoryStore) -> None:
    reply = await commands(store).handle(message("/foo"))
    assert isinstance(reply, Reply) and "/foo" in reply.text and "/help" in reply.text


async def test_fetch_words_fetch_and_other_text_falls_through(store: MemoryStore) -> None:
    handler = commands(store)
    assert await handler.handle(message("1")) == Fetch()
    assert await handler.handle(message("继续")) == Fetch()
    assert await handler.handle(message("你好")) is UNHANDLED


async def test_commands_answer_inline_without_a_model_call(
    store: MemoryStore, provider: ScriptedProvider
) -> None:
    core = build_feature_core(store, provider, routers=[commands(store).router()])
    for n, typed in enumerate(["/help", "/new", "清除", "/stop", "/history", "/nope"], 1):
        record = await final(core, message(typed, n))
        assert record.kind is AnswerKind.REPLY and record.text
        assert await core.delivery.reply_text(record) == record.text
    assert provider.calls == []
    asked = await final(core, message("a question", 99))
    assert asked.kind is AnswerKind.LLM and provider.questions() == ["a question"]
    await core.supervisor.drain(1.0)
