"""Shutdown state: draining refuses webhooks with 503 + Retry-After, readiness, the time left.

On SIGTERM the server (``chatgate.app.server``) calls ``Lifecycle.begin_drain``: from then on
``/readyz`` says 503 (a load balancer stops sending traffic), webhook POSTs get 503 with
``Retry-After`` (the platform, or the proxy in front, tries again elsewhere or later), while
requests already inside — a try waiting for its answer — finish normally. Answer jobs get
until the grace deadline to finish; the lifespan cancels what is left, and cancelled jobs stay
``running`` in the store for the next start to resume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from chatgate.core.telemetry import NO_TELEMETRY, Telemetry

log = logging.getLogger(__name__)

# Seconds a refused webhook is told to wait: about what a restart takes.
RETRY_AFTER = 5


class Lifecycle:
    """Whether this process still takes new work, and until when shutdown may take."""

    def __init__(self, grace: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self._clock = clock
        self._deadline: float | None = None
        self._listeners: list[Callable[[], None]] = []

    @property
    def draining(self) -> bool:
        return self._deadline is not None

    def on_drain(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (once) when draining begins."""
        self._listeners.append(listener)

    def begin_drain(self) -> None:
        """Stop taking webhooks; shutdown may take ``grace`` seconds from now. Idempotent."""
        if self._deadline is not None:
            return
        self._deadline = self._clock() + self.grace
        log.info("draining: refusing new webhooks, %.0fs for running answers", self.grace)
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # a listener must not stop the shutdown
                log.exception("a drain listener failed")

    def remaining(self) -> float:
        """Seconds left of the grace period: all of it until draining begins."""
        if self._deadline is None:
            return self.grace
        return max(0.0, self._deadline - self._clock())


class DrainGate:
    """Pure ASGI middleware: while draining, webhook POSTs get 503 with ``Retry-After``.

    ``webhooks`` maps each webhook path to its channel (for the refusal counter). Other
    requests (answer pages, health, metrics, a URL verification GET) are served as usual.
    """

    def __init__(
        self,
        app: ASGIApp,
        lifecycle: Lifecycle,
        webhooks: Mapping[str, str],
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._app = app
        self._lifecycle = lifecycle
        self._webhooks = dict(webhooks)
        self._telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self._lifecycle.draining
            and scope["method"] == "POST"
            and scope["path"] in self._webhooks
        ):
            self._telemetry.webhook_refused(self._webhooks[scope["path"]], "draining")
            response = PlainTextResponse(
                "shutting down, try again",
                status_code=503,
                # Close the connection too, so a proxy's keep-alive does not stick to us.
                headers={"Retry-After": str(RETRY_AFTER), "Connection": "close"},
            )
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)
