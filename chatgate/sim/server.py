"""Run any ASGI app on a free loopback port inside the running event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

HOST = "127.0.0.1"


class LoopbackStartupError(RuntimeError):
    """The app's lifespan startup failed, or the port could not be bound."""


class _InProcessServer(uvicorn.Server):
    """A uvicorn server that shares its host's process and loop politely."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_done = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The host program (a test, the demo) owns SIGINT/SIGTERM; several servers in one
        # process would otherwise swap each other's handlers and re-raise signals on exit.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        except SystemExit as exc:
            # uvicorn exits the process on a failed startup; a SystemExit escaping a task
            # would stop the whole event loop, so turn it into an ordinary error.
            raise LoopbackStartupError("the ASGI app did not start; see the log") from exc
        finally:
            self.startup_done.set()


class LoopbackServer:
    """`async with LoopbackServer(app) as srv:` serves `app` at `srv.url` until the block ends.

    Requests still running at exit get `grace` seconds, then are cancelled, so a handler that
    never answers (a simulated hang) cannot block shutdown.
    """

    def __init__(self, app: ASGIApp, *, grace: int = 1) -> None:
        # log_config=None and log_level=None leave the host's logging configuration alone.
        config = uvicorn.Config(
            app,
            host=HOST,
            port=0,
            log_config=None,
            log_level=None,
            timeout_graceful_shutdown=grace,
        )
        self._server = _InProcessServer(config)
        self._task: asyncio.Task[None] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not running")
        return self._port

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. http://127.0.0.1:54321."""
        return f"http://{HOST}:{self.port}"

    async def __aenter__(self) -> LoopbackServer:
        if self._task is not None:
            raise RuntimeError("a LoopbackServer can be started only once")
        self._task = asyncio.create_task(self._server.serve(), name="chatgate.sim.LoopbackServer")
        await self._server.startup_done.wait()
        if not self._server.started:
            await self._task  # raises LoopbackStartupError
            raise LoopbackStartupError("the server stopped during startup")
        sockets = self._server.servers[0].sockets
        self._port = int(sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop accepting, let running requests finish within the grace period, then stop."""
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        finally:
            self._port = None
