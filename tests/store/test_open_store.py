"""``open_store``: a ``CHATGATE_STORE`` URL names a backend, or start fails with ConfigError."""

from __future__ import annotations

import pytest

from chatgate.errors import ConfigError
from chatgate.store import open_store
from chatgate.store.memory import MemoryStore
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
    ["", "sqlite:///", "sqlite://chatgate.db", "memory://x", "redis://localhost:6379/0", "db"],
)
def test_other_urls_raise_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="store"):
        open_store(url)
