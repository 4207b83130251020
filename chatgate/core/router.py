"""Router: filters pick the handler that decides what a message becomes.

A handler returns a ``Decision`` — a fixed ``Reply``, an ``Ask`` for the model, a ``Fetch`` of
an answer that is waiting, or ``Silent`` — or ``UNHANDLED`` to let the next handler try.
Routers nest (``include``); the first handler whose filter matches and which does not return
``UNHANDLED`` wins. Features (commands, keyword rules, events) are routers of their own,
included ahead of the default ask-the-model handler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, TypeAlias

from chatgate.core.messages import Inbound, Kind


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer at once with this text; no model call."""

    text: str


@dataclass(frozen=True, slots=True)
class Ask:
    """Start an answer job: the model answers ``question`` (with images for vision models)."""

    question: str
    images: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Fetch:
    """Deliver the next part of an answer the user has not fully read (「1」)."""


@dataclass(frozen=True, slots=True)
class Silent:
    """Acknowledge with nothing shown (most events)."""


Decision: TypeAlias = Reply | Ask | Fetch | Silent


class _Unhandled(Enum):
    UNHANDLED = "UNHANDLED"


UNHANDLED: Final = _Unhandled.UNHANDLED

HandlerResult: TypeAlias = Decision | _Unhandled
Handler: TypeAlias = Callable[[Inbound], Awaitable[HandlerResult]]
Filter: TypeAlias = Callable[[Inbound], bool]


def kind_is(*kinds: Kind) -> Filter:
    return lambda inbound: inbound.kind in kinds


def any_message(inbound: Inbound) -> bool:
    return True


@dataclass(slots=True)
class Router:
    """An ordered list of (filter, handler) pairs and nested routers."""

    name: str = "root"
    _routes: list[tuple[Filter, Handler] | Router] = field(default_factory=list)

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

    async def resolve(self, inbound: Inbound) -> HandlerResult:
        for route in self._routes:
            if isinstance(route, Router):
                result = await route.resolve(inbound)
            else:
                matches, handler = route
                if not matches(inbound):
                    continue
                result = await handler(inbound)
            if result is not UNHANDLED:
                return result
        return UNHANDLED
