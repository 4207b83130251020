"""Events: a welcome on subscribe, the user's data deleted on unsubscribe, menu clicks as text.

- ``subscribe`` (also from a QR code) → the welcome text.
- ``unsubscribe`` → the conversation's history, answers and claims are deleted, with every
  other per-user value (session, provider state…) the ``forget`` callables remove; nothing is
  shown (the user is gone).
- ``CLICK`` on a menu button whose key the rules file's ``[menu]`` maps → routed exactly as if
  the user had typed the mapped text, so a button can run a command, a keyword rule, or a
  question (``MenuClicks``, an outer middleware, does the rewriting).
- Every other event falls through to the default routes, which acknowledge it silently.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeAlias

from chatgate.core.decisions import Handler, HandlerResult, Reply, Silent
from chatgate.core.messages import Inbound, Kind
from chatgate.core.router import Router
from chatgate.store.base import Store

log = logging.getLogger(__name__)

# Deletes one kind of per-user value, given the conversation ("channel:account:user").
Forget: TypeAlias = Callable[[str], Awaitable[None]]


def event_is(*names: str) -> Callable[[Inbound], bool]:
    wanted = {name.casefold() for name in names}
    return lambda inbound: inbound.kind is Kind.EVENT and (inbound.event or "").casefold() in wanted


class Events:
    """The events router's handlers."""

    def __init__(self, store: Store, *, welcome: str, forget: Sequence[Forget] = ()) -> None:
        self._store = store
        self._welcome = welcome
        self._forget = tuple(forget)

    def router(self) -> Router:
        router = Router("events")
        router.add(self.subscribed, event_is("subscribe"))
        router.add(self.unsubscribed, event_is("unsubscribe"))
        return router

    async def subscribed(self, inbound: Inbound) -> HandlerResult:
        return Reply(self._welcome) if self._welcome else Silent()

    async def unsubscribed(self, inbound: Inbound) -> HandlerResult:
        await self.forget_user(str(inbound.conversation))
        log.info("message %s: user unsubscribed; their data is deleted", inbound.dedup_key)
        return Silent()

    async def forget_user(self, conversation: str) -> None:
        await self._store.delete_conversation(conversation)
        for forget in self._forget:
            await forget(conversation)


class MenuClicks:
    """Outer middleware: a mapped menu CLICK continues as a text message with the mapped text."""

    def __init__(self, menu: Mapping[str, str]) -> None:
        self._menu = dict(menu)

    async def __call__(self, handler: Handler, inbound: Inbound) -> HandlerResult:
        if (
            inbound.kind is Kind.EVENT
            and (inbound.event or "").upper() == "CLICK"
            and inbound.event_key is not None
        ):
            text = self._menu.get(inbound.event_key)
            if text is None:
                log.info(
                    "message %s: menu key %r is not mapped", inbound.dedup_key, inbound.event_key
                )
                return Silent()
            typed = dataclasses.replace(
                inbound, kind=Kind.TEXT, text=text, event=None, event_key=None
            )
            return await handler(typed)
        return await handler(inbound)
