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
    """An ordered list of (filter, handler) pairs and nested routers, with middleware."""

    name: str = "root"
    _routes: list[tuple[Filter, Handler] | Router] = field(default_factory=list)
    _outer: list[Middleware] = field(default_factory=list)
    _inner: list[Middleware] = field(default_factory=list)

    def add(self, handler: Handler, filter: Filter = any_message) -> Handler:
        self._routes.append((filter, handler))
        return handler

    def on(self, filter: Filter = any_message) -> Callable[[Handler], Handler]:
        """Decorator form of ``add``."""

        def register(handler: Handler) -> Handler:
            return self.add(handler, filter)

        return register

    def include(self, router: Router) -> Router:
        self._routes.append(router)
        return router

    def outer_middleware(self, middleware: Middleware) -> Middleware:
        """Run ``middleware`` around this router, for every message that reaches it."""
        self._outer.append(middleware)
        return middleware

    def middleware(self, middleware: Middleware) -> Middleware:
        """Run ``middleware`` around each matched handler here and in included routers."""
        self._inner.append(middleware)
        return middleware

    async def resolve(self, inbound: Inbound) -> HandlerResult:
        return await self._resolve(inbound, ())

    async def _resolve(self, inbound: Inbound, inherited: tuple[Middleware, ...]) -> HandlerResult:
        inner = (*inherited, *self._inner)

        async def propagate(message: Inbound) -> HandlerResult:
            for route in self._routes:
                if isinstance(route, Router):
                    result = await route._resolve(message, inner)
                else:
                    matches, handler = route
                    if not matches(message):
                        continue
                    result = await (wrap(inner, handler) if inner else handler)(message)
                if result is not UNHANDLED:
                    return result
            return UNHANDLED

        if not self._outer:
            return await propagate(inbound)
        return await wrap(self._outer, propagate)(inbound)
