"""Fixtures for every test folder: a Redis server for the session, started only when asked for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_server import delete_prefix, redis_for_tests, unique_prefix


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``CHATGATE_TEST_REDIS_URL``, or a ``redis-server`` on a free loopback port for this run."""
    with redis_for_tests() as url:
        yield url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = unique_prefix()
    yield prefix
    delete_prefix(redis_url, prefix)
