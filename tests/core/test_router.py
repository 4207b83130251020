"""The router: first match wins, UNHANDLED falls through, routers nest."""

from __future__ import annotations

from chatgate.core.messages import Inbound, Kind
from chatgate.core.router import (
    UNHANDLED,
    Ask,
    Fetch,
    Handler,
    HandlerResult,
    Reply,
    Router,
    Silent,
    kind_is,
)
from chatgate.core.routes import default_router
from chatgate.core.texts import Texts


def text(t: str, kind: Kind = Kind.TEXT) -> Inbound:
    return Inbound("wechat_mp", "gh_a", "u1", "msg:1", kind, text=t)


async def test_first_matching_handler_wins_and_unhandled_falls_through() -> None:
    router = Router()
    seen: list[str] = []

    @router.on(lambda m: m.text.startswith("/"))
    async def declines(m: Inbound) -> HandlerResult:
        seen.append("declines")
        return UNHANDLED

    @router.on(kind_is(Kind.TEXT))
    async def answers(m: Inbound) -> HandlerResult:
        seen.append("answers")
        return Reply("hi")

    assert await router.resolve(text("/x")) == Reply("hi")
    assert seen == ["declines", "answers"]


async def test_included_router_is_tried_in_order() -> None:
    root = Router()
    inner = Router("inner")

    @inner.on(lambda m: m.text == "ping")
    async def pong(m: Inbound) -> HandlerResult:
        return Reply("pong")

    root.include(inner)
    root.include(default_router(Texts()))
    assert await root.resolve(text("ping")) == Reply("pong")
    assert await root.resolve(text("what is up")) == Ask("what is up")


async def test_default_routes() -> None:
    router = default_router(Texts())
    assert await router.resolve(text("1")) == Fetch()
    assert await router.resolve(text(" 继续 ")) == Fetch()
    assert await router.resolve(text("  ")) == Reply(Texts().empty_question)
    assert await router.resolve(text("hello", Kind.VOICE)) == Ask("hello")
    assert await router.resolve(text("", Kind.VOICE)) == Reply(Texts().unsupported)
    assert await router.resolve(text("", Kind.IMAGE)) == Reply(Texts().unsupported)
    assert await router.resolve(text("", Kind.EVENT)) == Silent()


async def test_routes_and_middleware_added_after_the_first_message_are_used_from_the_next() -> None:
    root, inner = Router(), Router("inner")
    root.include(inner)
    root.include(default_router(Texts()))
    assert await root.resolve(text("ping")) == Ask("ping")

    @inner.on(lambda m: m.text == "ping")
    async def pong(m: Inbound) -> HandlerResult:
        return Reply("pong")

    assert await root.resolve(text("ping")) == Reply("pong")
    seen: list[str] = []

    async def noting(handler: Handler, inbound: Inbound) -> HandlerResult:
        seen.append(inbound.text)
        return await handler(inbound)

    root.middleware(noting)  # inner middleware: wraps the handlers of included routers too
    assert await root.resolve(text("ping")) == Reply("pong")
    assert seen == ["ping"]
    root.outer_middleware(noting)
    assert await root.resolve(text("x")) == Ask("x")
    assert seen == ["ping", "x", "x"]


async def test_a_router_included_twice_routes_right_under_each_parents_middleware() -> None:
    shared = Router("shared")

    @shared.on()
    async def echo(m: Inbound) -> HandlerResult:
        return Reply(m.text)

    def shouting(name: str) -> Router:
        async def shout(handler: Handler, inbound: Inbound) -> HandlerResult:
            result = await handler(inbound)
            return Reply(f"{name}:{result.text}") if isinstance(result, Reply) else result

        parent = Router(name)
        parent.middleware(shout)
        parent.include(shared)
        return parent

    first, second = shouting("a"), shouting("b")
    for _ in range(2):
        assert await first.resolve(text("hi")) == Reply("a:hi")
        assert await second.resolve(text("hi")) == Reply("b:hi")
