"""Router: filters pick the handler that decides what a message becomes.

A handler returns a ``Decision`` — a fixed ``Reply``, an ``Ask`` for the model, a ``Fetch`` of
an answer that is waiting, or ``Silent`` — or ``UNHANDLED`` to let the next handler try.
Routers nest (``include``); the first handler whose filter matches and which does not return
``UNHANDLED`` wins. Features (commands, keyword rules, events) are routers of their own,
included ahead of the default ask-the-model handler. Middleware (``core.middleware``) runs
around a router (outer) or around its matched handlers (inner).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

from chatgate.core.decisions import (
    UNHANDLED,
    Ask,
    Decision,
    Fetch,
    Handler,
    HandlerResult,
    Reply,
    Silent,
)
from chatgate.core.messages import Inbound, Kind
from chatgate.core.middleware import Middleware, wrap

__all__ = [
    "UNHANDLED",
    "Ask",
    "Decision",
    "Fetch",
    "Filter",
    "Handler",
    "HandlerResult",
    "Reply",
    "Router",
    "Silent",
    "any_message",
    "kind_is",
]

Filter: TypeAlias = Callable[[Inbound], bool]


def kind_is(*kinds: Kind) -> Filter:
    return lambda inbound: inbound.kind in kinds


def any_message(inbound: Inbound) -> bool:
    return True


@dataclass(slots=True)
class Router:
    """An ordered list of (filter, handler) pairs and nested routers, with middleware.

    What a message walks through — each handler wrapped in its middleware, the router's outer
    middleware around it all — is put together once, when the first message comes after a
    change, not for every message: routing is on every acknowledgement.
    """

    name: str = "root"
    _routes: list[tuple[Filter, Handler] | Router] = field(default_factory=list)
    _outer: list[Middleware] = field(default_factory=list)
    _inner: list[Middleware] = field(default_factory=list)
    # The chain last built, and the inherited middleware it was built for (by identity: a
    # parent passes the same tuple every time).
    _chain: Handler | None = field(default=None, init=False, repr=False, compare=False)
    _chain_for: tuple[Middleware, ...] = field(default=(), init=False, repr=False, compare=False)

    def add(self, handler: Handler, filter: Filter = any_message) -> Handler:
        self._routes.append((filter, handler))
        self._chain = None
        return handler

    def on(self, filter: Filter = any_message) -> Callable[[Handler], Handler]:
        """Decorator form of ``add``."""

        def register(handler: Handler) -> Handler:
            return self.add(handler, filter)

        return register

    def include(self, router: Router) -> Router:
        self._routes.append(router)
        self._chain = None
        return router

    def outer_middleware(self, middleware: Middleware) -> Middleware:
        """Run ``middleware`` around this router, for every message that reaches it."""
        self._outer.append(middleware)
        self._chain = None
        return middleware

    def middleware(self, middleware: Middleware) -> Middleware:
        """Run ``middleware`` around each matched handler here and in included routers."""
        self._inner.append(middleware)
        self._chain = None
        return middleware

    async def resolve(self, inbound: Inbound) -> HandlerResult:
        return await self._chain_under(())(inbound)

    def _chain_under(self, inherited: tuple[Middleware, ...]) -> Handler:
        chain = self._chain
        if chain is None or self._chain_for is not inherited:
            chain = self._chain = self._build(inherited)
            self._chain_for = inherited
        return chain

    def _build(self, inherited: tuple[Middleware, ...]) -> Handler:
        inner = (*inherited, *self._inner)
        # An included router is asked for its chain on each message, so that a change to it
        # (or to a router it includes) is seen without rebuilding this one.
        steps = [
            route if isinstance(route, Router) else (route[0], wrap(inner, route[1]))
            for route in self._routes
        ]

        async def propagate(message: Inbound) -> HandlerResult:
            for step in steps:
                if isinstance(step, Router):
                    result = await step._chain_under(inner)(message)
                else:
                    matches, handler = step
                    if not matches(message):
                        continue
                    result = await handler(message)
                if result is not UNHANDLED:
                    return result
            return UNHANDLED

        return wrap(self._outer, propagate)
