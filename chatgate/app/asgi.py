"""The ASGI application: routes, and a lifespan that owns the store, provider and tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chatgate.app.lifecycle import DrainGate, Lifecycle
from chatgate.app.metrics import PrometheusTelemetry, metrics_route
from chatgate.app.roles import Role
from chatgate.app.shortcut import WebhookShortcut, webhook_endpoints
from chatgate.app.wiring import Services, build_services
from chatgate.config import Settings
from chatgate.core.telemetry import LOST_EXPIRED_UNFINISHED, channel_of
from chatgate.errors import StoreError

log = logging.getLogger(__name__)

PURGE_EVERY = 600.0


async def _count_lost_before_purge(services: Services) -> None:
    """Unfinished answers past their expiry are about to be purged: no one can get them now."""
    now = time.time()
    for answer in await services.store.unfinished_answers():
        if answer.expires_at is not None and answer.expires_at <= now:
            log.error("answer %s expired before it finished: lost", answer.id)
            services.telemetry.answer_lost(channel_of(answer.conversation), LOST_EXPIRED_UNFINISHED)


def webhook_paths(settings: Settings) -> dict[str, str]:
    """The webhook paths that take user messages, and their channels."""
    paths = {}
    if settings.wechat_enabled:
        paths[settings.wechat_path] = "wechat_mp"
    if settings.dingtalk_enabled and settings.dingtalk_mode == "http":
        paths[settings.dingtalk_path] = "dingtalk"
    return paths


async def _purge_forever(services: Services) -> None:
    while True:
        await asyncio.sleep(PURGE_EVERY)
        try:
            await _count_lost_before_purge(services)
            removed = await services.store.purge_expired()
        except StoreError:
            log.exception("purging expired records failed; will retry")
            continue
        if removed:
            log.info("purged %d expired records", removed)


def build_app(settings: Settings, *, role: Role = Role.ALL, **overrides: Any) -> Starlette:
    """The gateway as an ASGI app. ``overrides`` replace services (store, provider, …) in tests.

    ``role`` (``app.roles``): a worker serves only the health and metrics routes, and web
    roles run no stream worker.
    """
    services = build_services(settings, role=role, **overrides)
    lifecycle = Lifecycle(settings.shutdown_grace)
    # No more webhooks to give way to: background work waiting its turn starts, and gets the
    # grace to finish in.
    lifecycle.on_drain(services.precedence.release_all)

    async def healthz(request: Request) -> Response:
        # Liveness only: a store outage is for /readyz; restarting the process would not help.
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if lifecycle.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        try:
            await services.store.ping()
        except StoreError as exc:
            return JSONResponse({"status": "unavailable", "store": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready"})

    routes: list[Any] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    telemetry = services.telemetry
    if isinstance(telemetry, PrometheusTelemetry):
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        routes.append(metrics_route(telemetry, token))
        lifecycle.on_drain(lambda: telemetry.draining.set(1))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.store.open()
        recovered = await (services.queue or services.jobs).recover()
        if recovered:
            log.info("resumed %d unfinished answers", recovered)
        for hook in services.on_startup:
            await hook()
        loops = [asyncio.create_task(_purge_forever(services), name="purge")]
        # Channels' loops take messages in (a stream client): web roles only.
        makers = list(services.background) if role.web else []
        if services.worker is not None:
            makers.append(services.worker.run)
        intake = [asyncio.create_task(make(), name=make.__qualname__) for make in makers]
        loops += intake

        # Draining stops taking work in by every door: webhooks (DrainGate), stream clients and
        # the job stream (these loops); what was taken in finishes within the grace.
        def stop_intake() -> None:
            for task in intake:
                task.cancel()

        lifecycle.on_drain(stop_intake)
        try:
            yield
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            services.precedence.release_all()  # shut down with no drain (no signal) first
            # What is left of CHATGATE_SHUTDOWN_GRACE if SIGTERM started a drain, else all of it.
            cancelled = await services.supervisor.drain(lifecycle.remaining())
            if cancelled:
                log.warning(
                    "%d answers still running at shutdown; they resume on next start", cancelled
                )
            for hook in services.on_shutdown:
                await hook()
            await services.provider.aclose()
            await services.store.close()

    webhooks = webhook_paths(settings)
    channel_routes = services.routes if role.web else []
    app = Starlette(
        # The channels' webhooks first: every message is matched against the routes in order.
        routes=[*channel_routes, *routes],
        middleware=[
            Middleware(
                DrainGate,
                lifecycle=lifecycle,
                webhooks=webhooks,
                telemetry=services.telemetry,
            ),
            # Inside the drain gate: a draining gateway refuses webhooks before this.
            Middleware(WebhookShortcut, endpoints=webhook_endpoints(channel_routes, webhooks)),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.lifecycle = lifecycle
    return app
