"""``open_store``: a ``CHATGATE_STORE`` URL names a backend, or start fails with ConfigError."""

from __future__ import annotations

import pytest

from chatgate.errors import ConfigError
from chatgate.store import open_store
from chatgate.store.memory import MemoryStore
from chatgate.store.redis import RedisStore
from chatgate.store.sqlite import SqliteStore


def test_memory_url_gives_a_memory_store() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///chatgate.db", "chatgate.db"),
        ("sqlite:///data/chatgate.db", "data/chatgate.db"),
        ("sqlite:////var/lib/chatgate/chatgate.db", "/var/lib/chatgate/chatgate.db"),
    ],
)
def test_sqlite_url_gives_a_store_on_the_path_after_three_slashes(url: str, path: str) -> None:
    store = open_store(url)
    assert isinstance(store, SqliteStore)
    assert store.path == path


@pytest.mark.parametrize(
    "url",
    ["", "sqlite:///", "sqlite://chatgate.db", "memory://x", "postgres://localhost/db", "db"],
)
def test_other_urls_raise_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="store"):
        open_store(url)


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "redis://:secret@redis.internal", "rediss://r:6380/2"]
)
def test_redis_url_gives_a_redis_store_under_the_prefix(url: str) -> None:
    store = open_store(url, redis_prefix="bot-a:")
    assert isinstance(store, RedisStore)
    assert store.keys.claim("m1") == "bot-a:claim:m1"


@pytest.mark.parametrize(
    "url", ["redis://", "redis://:pw@/0", "redis://host:port/0", "redis://host:6379/zero"]
)
def test_a_malformed_redis_url_is_a_config_error_that_hides_the_password(url: str) -> None:
    with pytest.raises(ConfigError, match="store") as caught:
        open_store(url.replace("pw", "s3cret"))
    assert "s3cret" not in str(caught.value)
