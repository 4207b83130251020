"""Store fixtures: ``backend`` and ``store`` run a test once per backend in ``support``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.store.base import Store
from tests.store.support import BACKENDS, SHARED_BACKENDS, Backend, FakeClock, make_backend


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _make(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Backend:
    redis = None
    if request.param == "redis":
        # Asked for only here, so runs without the Redis backend never start a server.
        redis = (request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix"))
    return make_backend(request.param, clock, tmp_path, redis=redis)


@pytest.fixture(params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path
) -> AsyncIterator[Backend]:
    made = _make(request, clock, tmp_path)
    yield made
    await made.close_all()


@pytest.fixture(params=SHARED_BACKENDS)
async def shared_backend(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path
) -> AsyncIterator[Backend]:
    made = _make(request, clock, tmp_path)
    yield made
    await made.close_all()


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()
