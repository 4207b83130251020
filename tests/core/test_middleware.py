"""Middleware: outer runs around a router for every message, inner around matched handlers."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from chatgate.core.decisions import UNHANDLED, Handler, HandlerResult, Reply
from chatgate.core.messages import Inbound, Kind
from chatgate.core.middleware import ErrorGuard, Middleware, wrap
from chatgate.core.router import Router


def text(t: str) -> Inbound:
    return Inbound("wechat_mp", "gh_a", "u1", "msg:7", Kind.TEXT, text=t)


def recorder(name: str, seen: list[str]) -> Middleware:
    async def middleware(handler: Handler, inbound: Inbound) -> HandlerResult:
        seen.append(f"{name} in")
        result = await handler(inbound)
        seen.append(f"{name} out")
        return result

    return middleware


def echo_router(seen: list[str]) -> Router:
    router = Router("echo")

    @router.on(lambda m: m.text.startswith("echo "))
    async def echo(m: Inbound) -> HandlerResult:
        seen.append("handler")
        return Reply(m.text.removeprefix("echo "))

    return router


async def test_outer_middleware_runs_for_every_message_first_registered_outermost() -> None:
    seen: list[str] = []
    router = echo_router(seen)
    router.outer_middleware(recorder("a", seen))
    router.outer_middleware(recorder("b", seen))
    assert await router.resolve(text("echo hi")) == Reply("hi")
    assert seen == ["a in", "b in", "handler", "b out", "a out"]
    seen.clear()
    assert await router.resolve(text("no handler matches")) is UNHANDLED
    assert seen == ["a in", "b in", "b out", "a out"]


async def test_inner_middleware_runs_only_around_a_matched_handler_also_in_included_routers() -> (
    None
):
    seen: list[str] = []
    root = Router()
    root.middleware(recorder("inner", seen))
    root.include(echo_router(seen))
    assert await root.resolve(text("nothing")) is UNHANDLED
    assert seen == []
    assert await root.resolve(text("echo x")) == Reply("x")
    assert seen == ["inner in", "handler", "inner out"]


async def test_outer_middleware_can_pass_a_different_message_on() -> None:
    seen: list[str] = []
    router = echo_router(seen)

    async def rewrite(handler: Handler, inbound: Inbound) -> HandlerResult:
        return await handler(dataclasses.replace(inbound, text="echo rewritten"))

    router.outer_middleware(rewrite)
    assert await router.resolve(text("anything")) == Reply("rewritten")


async def test_outer_middleware_can_replace_the_decision() -> None:
    router = echo_router([])

    async def shout(handler: Handler, inbound: Inbound) -> HandlerResult:
        result = await handler(inbound)
        return Reply(result.text.upper()) if isinstance(result, Reply) else result

    router.outer_middleware(shout)
    assert await router.resolve(text("echo hi")) == Reply("HI")


async def test_wrap_without_middleware_is_the_handler_itself() -> None:
    async def handler(inbound: Inbound) -> HandlerResult:
        return Reply("plain")

    assert wrap([], handler) is handler


async def test_error_guard_logs_the_message_id_and_replies_instead_of_failing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = Router()
    router.outer_middleware(ErrorGuard("sorry"))

    @router.on()
    async def broken(m: Inbound) -> HandlerResult:
        raise RuntimeError("feature bug")

    with caplog.at_level(logging.ERROR, logger="chatgate.core.middleware"):
        assert await router.resolve(text("hi")) == Reply("sorry")
    assert "msg:7" in caplog.text and "feature bug" in caplog.text
