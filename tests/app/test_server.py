"""The gateway's uvicorn server: what it does around uvicorn's own startup."""

from __future__ import annotations

import asyncio
import gc

import uvicorn
from starlette.applications import Starlette

from chatgate.app.lifecycle import Lifecycle
from chatgate.app.server import GC_YOUNG_THRESHOLD, GatewayServer
from chatgate.core.tasks import TaskSupervisor


async def test_startup_hides_what_it_built_from_the_collector_and_collects_less_often() -> None:
    gc.unfreeze()
    thresholds = gc.get_threshold()
    config = uvicorn.Config(Starlette(), host="127.0.0.1", port=0, lifespan="off", log_config=None)
    server = GatewayServer(config, Lifecycle(1.0), TaskSupervisor(1))
    assert gc.get_freeze_count() == 0
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
                await asyncio.sleep(0.01)
        assert gc.get_freeze_count() > 0
        # Young collections come less often: fewer passes over what pending jobs keep alive.
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *thresholds[1:])
        assert thresholds[0] < GC_YOUNG_THRESHOLD
    finally:
        server.should_exit = True
        await serving
        gc.unfreeze()  # the rest of the test run collects as usual
        gc.set_threshold(*thresholds)
