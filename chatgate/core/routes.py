"""Default routes: 「1」 fetches, text and recognised voice ask the model, the rest is hinted."""

from __future__ import annotations

from chatgate.core.messages import Inbound, Kind
from chatgate.core.router import Ask, Fetch, HandlerResult, Reply, Router, Silent, kind_is
from chatgate.core.texts import Texts

FETCH_WORDS = frozenset({"1", "１", "继续"})


def is_fetch(inbound: Inbound) -> bool:
    return inbound.kind is Kind.TEXT and inbound.text.strip() in FETCH_WORDS


def default_router(texts: Texts) -> Router:
    """Routes every message somewhere; feature routers are included ahead of these."""
    router = Router("default")

    @router.on(is_fetch)
    async def fetch(inbound: Inbound) -> HandlerResult:
        return Fetch()

    @router.on(kind_is(Kind.TEXT, Kind.VOICE))
    async def ask(inbound: Inbound) -> HandlerResult:
        question = inbound.text.strip()
        if question:
            return Ask(question)
        return Reply(texts.unsupported if inbound.kind is Kind.VOICE else texts.empty_question)

    @router.on(kind_is(Kind.EVENT))
    async def event(inbound: Inbound) -> HandlerResult:
        return Silent()

    @router.on()
    async def other(inbound: Inbound) -> HandlerResult:
        return Reply(texts.unsupported)

    return router
