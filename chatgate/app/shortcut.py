"""Webhook POSTs straight to their endpoint, past Starlette's router and exception layers.

Every user message is a POST to a channel's webhook, and the platform waits for its
acknowledgement: it is the one request that comes by the thousand. Starlette's way there
(``ExceptionMiddleware``, the router's walk, ``request_response``) nests five more coroutines
and two exception wrappers around the endpoint, about 8 % of an acknowledgement's
instructions, and every time the acknowledgement waits (a store commit) it unwinds and
resumes through all of them. Webhook endpoints return responses and raise nothing for
Starlette to turn into one, so they lose nothing by skipping that way.

An endpoint mounted as a plain ASGI app (``channels.raw_http``) is called as it is; a function
endpoint gets a ``Request`` and its ``Response`` is sent. Anything else — another method,
another path, a path under a ``root_path`` — goes the usual way, which stays complete: the
shortcut only finds routes the router would find too.
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


class _RequestResponse:
    """A function endpoint as an ASGI app, without the exception layers around it."""

    __slots__ = ("endpoint",)

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.endpoint(Request(scope, receive, send))
        await response(scope, receive, send)


def webhook_endpoints(routes: Sequence[BaseRoute], paths: Collection[str]) -> dict[str, ASGIApp]:
    """The POST endpoints of ``routes`` at exactly one of ``paths``, as ASGI apps, by path.

    Async function endpoints and plain ASGI app endpoints qualify: a path with parameters, a
    mounted app, a sync function or a route with middleware of its own needs what the router
    does for it.
    """
    endpoints: dict[str, ASGIApp] = {}
    for route in routes:
        if not isinstance(route, Route) or route.path not in paths or route.param_convertors:
            continue
        if "POST" not in (route.methods or ()) or route.path in endpoints:
            continue
        if inspect.iscoroutinefunction(route.endpoint):
            endpoints[route.path] = _RequestResponse(route.endpoint)
        elif route.app is route.endpoint and not inspect.isroutine(route.endpoint):
            endpoints[route.path] = route.endpoint  # an ASGI app, mounted as it is
    return endpoints


class WebhookShortcut:
    """Pure ASGI middleware: a POST to a webhook path is served by its endpoint directly."""

    def __init__(self, app: ASGIApp, endpoints: dict[str, ASGIApp]) -> None:
        self._app = app
        self._endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self._endpoints.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self._app(scope, receive, send)
