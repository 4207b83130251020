"""Webhook POSTs straight to their endpoint, past Starlette's router and exception layers.

Every user message is a POST to a channel's webhook, and the platform waits for its
acknowledgement: it is the one request that comes by the thousand. Starlette's way there
(``ExceptionMiddleware``, the router's walk, ``request_response``) nests five more coroutines
and two exception wrappers around the endpoint, about 8 % of an acknowledgement's
instructions, and every time the acknowledgement waits (a store commit) it unwinds and
resumes through all of them. Webhook endpoints return responses and raise nothing for
Starlette to turn into one, so they lose nothing by skipping that way.

Anything else — another method, another path, a path under a ``root_path`` — goes the usual
way, which stays complete: the shortcut only finds routes the router would find too.
``ServerErrorMiddleware`` stays outside it, so an endpoint that fails still gets a 500 and a
log line, as before.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Collection, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


def webhook_endpoints(routes: Sequence[BaseRoute], paths: Collection[str]) -> dict[str, Endpoint]:
    """The POST endpoints of ``routes`` at exactly one of ``paths``, by path.

    Only plain async function routes qualify: a path with parameters, a mounted app or a
    class endpoint needs what the router does for it.
    """
    endpoints: dict[str, Endpoint] = {}
    for route in routes:
        if not isinstance(route, Route) or route.path not in paths or route.param_convertors:
            continue
        if "POST" not in (route.methods or ()) or route.path in endpoints:
            continue
        if inspect.iscoroutinefunction(route.endpoint):
            endpoints[route.path] = route.endpoint
    return endpoints


class WebhookShortcut:
    """Pure ASGI middleware: a POST to a webhook path is served by its endpoint directly."""

    def __init__(self, app: ASGIApp, endpoints: dict[str, Endpoint]) -> None:
        self._app = app
        self._endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self._endpoints.get(scope["path"])
            if endpoint is not None:
                response = await endpoint(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)
