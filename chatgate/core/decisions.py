"""What routing decides a message becomes: a reply, a question for the model, a fetch, or nothing.

A handler returns a ``Decision`` — a fixed ``Reply``, an ``Ask`` for the model, a ``Fetch`` of
an answer that is waiting, or ``Silent`` — or ``UNHANDLED`` to let the next handler try.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final, TypeAlias

from chatgate.core.messages import Inbound


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
