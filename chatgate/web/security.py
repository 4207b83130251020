"""Security headers for the pages, as pure ASGI middleware, and the one 404 every bad token gets.

The pages are reached by capability URLs and show text a model wrote, so they:
- forbid every script but our own static file, every style but our own, every image, frame,
  plugin, form target and base URL (CSP); a sanitiser bug still cannot run script;
- never send the URL (which holds the token) to another site (``Referrer-Policy``);
- cannot be framed, sniffed into another type, cached, or indexed.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

NO_STORE = "no-store"


class SecurityHeaders:
    """Adds the pages' security headers to every HTTP response of the wrapped app."""

    def __init__(self, app: ASGIApp, *, cache_control: str = NO_STORE) -> None:
        self.app = app
        self._headers = {
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Cross-Origin-Resource-Policy": "same-origin",
            "X-Robots-Tag": "noindex, nofollow",
            "Cache-Control": cache_control,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self._headers.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def not_found() -> Response:
    """The same plain 404 for an unknown, expired or malformed token: nothing to tell them apart."""
    return PlainTextResponse("Not Found", status_code=404)
