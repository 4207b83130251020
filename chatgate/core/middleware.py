"""Middleware: code that runs around routing (outer) or around a matched handler (inner).

Two tiers as in aiogram, with one typed signature, ``async (handler, inbound) -> HandlerResult``
(no untyped data dict). A middleware may pass a different ``Inbound`` on (a menu click becomes
the text it stands for), look at or replace the decision that comes back (a question over the
rate limit becomes a friendly reply), or decide without calling ``handler`` at all.

- A router's *outer* middleware runs for every message that reaches the router, before any
  filter is tried; it sees the router's final decision, ``UNHANDLED`` included.
- A router's *inner* middleware runs only once a handler's filter matched, around that handler;
  it also wraps the handlers of every router the router includes.

The first middleware registered is the outermost.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import Protocol

from chatgate.core.decisions import Handler, HandlerResult, Reply
from chatgate.core.messages import Inbound

log = logging.getLogger(__name__)


class Middleware(Protocol):
    async def __call__(self, handler: Handler, inbound: Inbound) -> HandlerResult:
        """Decide for ``inbound``, usually by awaiting ``handler`` (the rest of the chain)."""
        ...


def wrap(middlewares: Sequence[Middleware], handler: Handler) -> Handler:
    """``handler`` inside ``middlewares``, the first of them outermost."""
    for middleware in reversed(middlewares):
        # A partial, not a closure that awaits it: the call returns the middleware's own
        # coroutine, one coroutine a layer fewer on every message.
        handler = functools.partial(middleware, handler)
    return handler


class ErrorGuard:
    """Outer middleware: a feature that fails is logged with the message id, not left hanging.

    The user gets ``reply`` (a short apology) instead of a webhook error that the platform
    would retry into the same failure.
    """

    def __init__(self, reply: str) -> None:
        self._reply = reply

    async def __call__(self, handler: Handler, inbound: Inbound) -> HandlerResult:
        try:
            return await handler(inbound)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "message %s from %s: routing failed", inbound.dedup_key, inbound.conversation
            )
            return Reply(self._reply)
