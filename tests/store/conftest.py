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


@pytest.fixture(params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path
) -> AsyncIterator[Backend]:
    made = make_backend(request.param, clock, tmp_path)
    yield made
    await made.close_all()


@pytest.fixture(params=SHARED_BACKENDS)
async def shared_backend(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path
) -> AsyncIterator[Backend]:
    made = make_backend(request.param, clock, tmp_path)
    yield made
    await made.close_all()


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()
