"""The ASGI application: routes, and a lifespan that owns the store, provider and tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chatgate.app.wiring import Services, build_services
from chatgate.config import Settings
from chatgate.errors import StoreError

log = logging.getLogger(__name__)

PURGE_EVERY = 600.0
SHUTDOWN_GRACE = 10.0


async def _purge_forever(services: Services) -> None:
    while True:
        await asyncio.sleep(PURGE_EVERY)
        try:
            removed = await services.store.purge_expired()
        except StoreError:
            log.exception("purging expired records failed; will retry")
            continue
        if removed:
            log.info("purged %d expired records", removed)


def build_app(settings: Settings, **overrides: Any) -> Starlette:
    """The gateway as an ASGI app. ``overrides`` replace services (store, provider, …) in tests."""
    services = build_services(settings, **overrides)

    async def healthz(request: Request) -> Response:
        try:
            await services.store.ping()
        except StoreError as exc:
            return JSONResponse({"status": "unavailable", "store": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.store.open()
        recovered = await services.jobs.recover()
        if recovered:
            log.info("resumed %d unfinished answers", recovered)
        for hook in services.on_startup:
            await hook()
        loops = [asyncio.create_task(_purge_forever(services), name="purge")]
        loops += [
            asyncio.create_task(make(), name=make.__qualname__) for make in services.background
        ]
        try:
            yield
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            cancelled = await services.supervisor.drain(SHUTDOWN_GRACE)
            if cancelled:
                log.warning(
                    "%d answers still running at shutdown; they resume on next start", cancelled
                )
            for hook in services.on_shutdown:
                await hook()
            await services.provider.aclose()
            await services.store.close()

    app = Starlette(
        routes=[Route("/healthz", healthz, methods=["GET"]), *services.routes],
        lifespan=lifespan,
    )
    app.state.services = services
    return app
