"""Commands: /help /new /stop /chatgpt /history and their Chinese aliases, ahead of everything else.

A command is the prefix (``CHATGATE_COMMAND_PREFIX``, "/" by default; a full-width "／" typed
by a Chinese keyboard counts too) and a word, optionally followed by text: ``/new 写一首诗``
forgets the context and asks at once. The Chinese aliases also work alone, without the prefix
(「帮助」, 「清除」…). 「1」 and 「继续」 fetch the rest of an answer. An unknown ``/word`` gets a
short hint instead of going to the model. Every command is answered with a fixed ``Reply``, so
it replies inline whatever the delivery mode.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

from chatgate.core.conversations import Conversations
from chatgate.core.decisions import UNHANDLED, Ask, Fetch, HandlerResult, Reply
from chatgate.core.messages import Inbound, Kind
from chatgate.core.router import Router, kind_is
from chatgate.core.routes import is_fetch
from chatgate.core.sessions import Sessions
from chatgate.core.texts import Texts

# The history page's link for a conversation ("channel:account:user"), or None without one.
HistoryLink: TypeAlias = Callable[[str], Awaitable[str | None]]


class Command(StrEnum):
    HELP = "help"
    NEW = "new"
    STOP = "stop"
    CHATGPT = "chatgpt"
    HISTORY = "history"


# Every spelling after the prefix, lower-cased.
NAMES: dict[str, Command] = {
    "help": Command.HELP,
    "帮助": Command.HELP,
    "new": Command.NEW,
    "clear": Command.NEW,
    "清除": Command.NEW,
    "新对话": Command.NEW,
    "stop": Command.STOP,
    "结束": Command.STOP,
    "chatgpt": Command.CHATGPT,
    "开始": Command.CHATGPT,
    "history": Command.HISTORY,
    "历史": Command.HISTORY,
}
# Aliases recognised as a whole message without the prefix.
BARE_ALIASES: dict[str, Command] = {
    word: command for word, command in NAMES.items() if not word.isascii()
}

_TRAILING = "。．.!！?？~～ \t\r\n"
# A command word (any letters, then letters/digits/_), then either text after whitespace or
# nothing but closing punctuation ("/help。" is /help).
_INVOCATION = re.compile(
    r"(?P<word>[^\W\d_]\w{0,31})(?:\s+(?P<args>.*)|[" + re.escape(_TRAILING) + r"]*)", re.S
)


@dataclass(frozen=True, slots=True)
class Invocation:
    """A command as typed: ``command`` is None for an unknown ``/word``."""

    word: str
    command: Command | None
    args: str = ""


def parse_command(text: str, prefix: str) -> Invocation | None:
    """The command ``text`` invokes, or ``None`` if it is not a command at all.

    ``/usr/bin 是什么`` and ``/开始学习`` are not commands (they go to the model); ``/foo`` is an
    unknown one.
    """
    stripped = text.strip()
    bare = stripped.rstrip(_TRAILING)
    if bare in BARE_ALIASES:
        return Invocation(bare, BARE_ALIASES[bare])
    head = unicodedata.normalize("NFKC", stripped[: len(prefix)])
    if not prefix or head != prefix:
        return None
    match = _INVOCATION.fullmatch(stripped[len(prefix) :])
    if match is None:
        return None
    word = unicodedata.normalize("NFKC", match.group("word")).casefold()
    args = (match.group("args") or "").strip()
    command = NAMES.get(word)
    if command is None and not word.isascii():
        return None
    return Invocation(word, command, args)


class Commands:
    """The command router's handler.

    ``sessions`` is the session store in ``command`` mode and ``None`` in ``always`` mode
    (where /chatgpt and /stop only explain that the AI is always on). ``history_link`` gives
    the history page's link; without it, /history says the page is not set up.
    """

    def __init__(
        self,
        *,
        conversations: Conversations,
        texts: Texts,
        prefix: str = "/",
        sessions: Sessions | None = None,
        history_link: HistoryLink | None = None,
    ) -> None:
        self._conversations = conversations
        self._texts = texts
        self._prefix = prefix
        self._sessions = sessions
        self._history_link = history_link

    def say(self, template: str, **values: str) -> str:
        minutes = f"{self._sessions.ttl / 60:g}" if self._sessions is not None else ""
        return template.format(p=self._prefix, minutes=minutes, **values)

    def router(self) -> Router:
        router = Router("commands")
        router.add(self.handle, kind_is(Kind.TEXT))
        return router

    async def handle(self, inbound: Inbound) -> HandlerResult:
        if is_fetch(inbound):
            return Fetch()
        invocation = parse_command(inbound.text, self._prefix)
        if invocation is None:
            return UNHANDLED
        conversation = str(inbound.conversation)
        match invocation.command:
            case Command.HELP:
                return Reply(self.help_text())
            case Command.NEW:
                # Also starts the provider's own conversation over (Dify's conversation_id).
                await self._conversations.reset(conversation)
                return Ask(invocation.args) if invocation.args else Reply(self._texts.context_reset)
            case Command.CHATGPT:
                if self._sessions is None:
                    if invocation.args:
                        return Ask(invocation.args)
                    return Reply(self.say(self._texts.session_always_on))
                await self._sessions.start(conversation)
                if invocation.args:
                    return Ask(invocation.args)
                return Reply(self.say(self._texts.session_started))
            case Command.STOP:
                if self._sessions is None:
                    return Reply(self.say(self._texts.session_always_on))
                if await self._sessions.end(conversation):
                    return Reply(self.say(self._texts.session_stopped))
                return Reply(self.say(self._texts.session_not_active))
            case Command.HISTORY:
                link = await self._history_link(conversation) if self._history_link else None
                if link is None:
                    return Reply(self._texts.history_unavailable)
                return Reply(self._texts.history_link.format(link=link))
            case None:
                return Reply(self.say(self._texts.unknown_command, name=invocation.word))

    def help_text(self) -> str:
        texts = self._texts
        if self._sessions is None:
            intro, session = texts.help_always, ""
        else:
            intro, session = texts.help_command_mode, self.say(texts.help_session_commands)
        return self.say(intro) + "\n\n" + self.say(texts.help_commands, session=session)
