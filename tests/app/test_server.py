"""The gateway's uvicorn server: what it does around uvicorn's own startup."""

from __future__ import annotations

import asyncio
import gc

import uvicorn
from starlette.applications import Starlette

from chatgate.app.lifecycle import Lifecycle
from chatgate.app.server import GatewayServer
from chatgate.core.tasks import TaskSupervisor


async def test_startup_moves_what_it_built_out_of_the_cyclic_collectors_sight() -> None:
    gc.unfreeze()
    config = uvicorn.Config(Starlette(), host="127.0.0.1", port=0, lifespan="off", log_config=None)
    server = GatewayServer(config, Lifecycle(1.0), TaskSupervisor(1))
    assert gc.get_freeze_count() == 0
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
                await asyncio.sleep(0.01)
        assert gc.get_freeze_count() > 0
    finally:
        server.should_exit = True
        await serving
        gc.unfreeze()  # the rest of the test run collects as usual
