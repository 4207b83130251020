"""``chatgate serve``: uvicorn, with SIGTERM turned into a drain before the exit.

uvicorn's own SIGTERM handling stops listening at once and then waits for open connections;
new webhooks would meet a closed port. Here the first SIGTERM (or Ctrl+C) only starts the
drain (``Lifecycle``): the port stays open and answers webhooks with 503 + Retry-After, the
running answer jobs get ``CHATGATE_SHUTDOWN_GRACE`` seconds to finish, then uvicorn is asked
to exit — it closes the port, lets requests in flight end (a few seconds at most), and the
lifespan cancels any job still running, which the next start resumes. A second
signal skips the wait; a third forces the exit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import signal
import socket
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from chatgate.app.lifecycle import Lifecycle
from chatgate.core.tasks import TaskSupervisor

log = logging.getLogger(__name__)

# uvicorn waits at least this long for requests in flight after the drain, even when the
# grace is used up: a WeChat try is held at most ~6 s (past WeChat's 5 s, see the passive
# window), so every try in flight ends as it would have — its answer, the placeholder on a
# last try — instead of being cut. Shutdown takes at most the grace plus this.
MIN_REQUEST_GRACE = 7

# Allocations (less deallocations) of container objects between two young collections; the
# interpreter's default is 700. Under a burst every pending answer job keeps its coroutine,
# task and record alive, and with 700 they were traversed again and again, young and old: a
# fifth of the gateway's CPU in a saturated ack bench, with full collections of about 60 ms.
# At 50 000 that is a twentieth, and the rarer young collections take about 15 ms.
GC_YOUNG_THRESHOLD = 50_000


class GatewayServer(uvicorn.Server):
    """A uvicorn server whose first exit signal drains the gateway before stopping."""

    def __init__(
        self, config: uvicorn.Config, lifecycle: Lifecycle, supervisor: TaskSupervisor
    ) -> None:
        super().__init__(config)
        self._lifecycle = lifecycle
        self._supervisor = supervisor
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # What startup built (modules, settings, the app, its services) lives as long as the
        # process. Frozen, it is out of the cyclic collector's sight, whose full passes then
        # scan only what requests create: without this they cost about a third of each
        # webhook acknowledgement, and pauses of tens of milliseconds.
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is None or not self.started or self._lifecycle.draining:
            # Still starting, or a second signal: uvicorn's own behaviour (exit now, then force).
            super().handle_exit(sig, frame)
            return
        log.info("%s received: draining", signal.Signals(sig).name)
        # A signal handler runs between two bytecodes of the loop's thread: schedule, don't act.
        self._loop.call_soon_threadsafe(self._begin_drain)

    def _begin_drain(self) -> None:
        if self._lifecycle.draining:
            return
        self._lifecycle.begin_drain()
        self._drain_task = asyncio.create_task(self._drain(), name="drain")

    async def _drain(self) -> None:
        idle = await self._supervisor.wait_idle(self._lifecycle.remaining())
        if idle:
            log.info("all answers finished; stopping")
        else:
            log.warning(
                "grace period over with %d answers still running; they resume on next start",
                self._supervisor.active,
            )
        self.config.timeout_graceful_shutdown = max(
            MIN_REQUEST_GRACE, math.ceil(self._lifecycle.remaining())
        )
        self.should_exit = True


def serve(app: Starlette, *, host: str, port: int, access_log: bool = False) -> None:
    """Run ``app`` (from ``build_app``) until SIGTERM or Ctrl+C, draining on the way out."""
    lifecycle: Lifecycle = app.state.lifecycle
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_config=None,  # our handler on the root logger formats uvicorn's lines too
        access_log=access_log,
        timeout_graceful_shutdown=max(MIN_REQUEST_GRACE, math.ceil(lifecycle.grace)),
    )
    server = GatewayServer(config, lifecycle, app.state.services.supervisor)
    server.run()
