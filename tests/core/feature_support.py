"""The core wired with feature routers and middleware, for the feature modules' tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from chatgate.core.conversations import Conversations
from chatgate.core.delivery import Delivery, Surface
from chatgate.core.dispatcher import Dispatcher
from chatgate.core.jobs import AnswerJobs, TextFilter
from chatgate.core.messages import Inbound, Kind
from chatgate.core.middleware import Middleware
from chatgate.core.router import Router
from chatgate.core.routes import default_router
from chatgate.core.tasks import TaskSupervisor
from chatgate.core.texts import Texts
from chatgate.store.base import AnswerRecord
from chatgate.store.memory import MemoryStore
from tests.core.conftest import Core, ScriptedProvider

CONVERSATION = "wechat_mp:gh_a:u1"


def message(
    text: str, n: int = 1, *, kind: Kind = Kind.TEXT, user: str = "u1", media_url: str | None = None
) -> Inbound:
    return Inbound("wechat_mp", "gh_a", user, f"msg:{n}", kind, text=text, media_url=media_url)


def event(name: str, key: str | None = None, n: int = 1, user: str = "u1") -> Inbound:
    return Inbound("wechat_mp", "gh_a", user, f"evt:{n}", Kind.EVENT, event=name, event_key=key)


def feature_router(
    *,
    routers: Sequence[Router] = (),
    middleware: Sequence[Middleware] = (),
    texts: Texts | None = None,
) -> Router:
    """A root router as the app builds it: middleware around, features ahead of the default."""
    root = Router()
    for m in middleware:
        root.outer_middleware(m)
    for r in routers:
        root.include(r)
    root.include(default_router(texts or Texts()))
    return root


def build_feature_core(
    store: MemoryStore,
    provider: ScriptedProvider,
    *,
    routers: Sequence[Router] = (),
    middleware: Sequence[Middleware] = (),
    text_filter: Callable[[], TextFilter] | None = None,
    texts: Texts | None = None,
    root: Router | None = None,
) -> Core:
    texts = texts or Texts()
    supervisor = TaskSupervisor(8)
    conversations = Conversations(store, system_prompt="sys", max_turns=20, max_tokens=3000)
    jobs = AnswerJobs(
        store,
        provider,
        conversations,
        supervisor,
        timeout=30,
        apology="sorry",
        text_filter=text_filter,
    )
    root = root or feature_router(routers=routers, middleware=middleware, texts=texts)
    dispatcher = Dispatcher(store, root, jobs, answer_ttl=3600)
    delivery = Delivery(store, Surface(max_bytes=2048), texts, answer_ttl=3600)
    return Core(store, provider, supervisor, jobs, dispatcher, delivery, texts)


async def final(core: Core, inbound: Inbound) -> AnswerRecord:
    """Accept ``inbound`` and wait for its record to finish."""
    ticket = await core.dispatcher.accept(inbound)
    record = await core.store.wait_answer(ticket.answer.id, 5)
    assert record is not None and record.finished
    await asyncio.sleep(0)
    return record
