"""State: one Store protocol, with memory and SQLite implementations."""

from __future__ import annotations

from chatgate.errors import ConfigError
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus, Store, Turn

__all__ = ["AnswerKind", "AnswerRecord", "AnswerStatus", "Store", "Turn", "open_store"]

_SQLITE_PREFIX = "sqlite:///"


def open_store(url: str) -> Store:
    """The store a ``CHATGATE_STORE`` URL names, not yet opened: ``await store.open()`` next.

    ``memory://`` keeps everything in this process. ``sqlite:///PATH`` is a file; the path is
    relative to the working directory, or absolute with a fourth slash
    (``sqlite:////var/lib/chatgate.db``).
    """
    # Backends are imported here, not at the top: importing the protocol must not pull in
    # a database driver.
    if url == "memory://":
        from chatgate.store.memory import MemoryStore

        return MemoryStore()
    if url.startswith(_SQLITE_PREFIX) and len(url) > len(_SQLITE_PREFIX):
        from chatgate.store.sqlite import SqliteStore

        return SqliteStore(url[len(_SQLITE_PREFIX) :])
    raise ConfigError(f"store: unsupported URL {url!r}; use memory:// or sqlite:///PATH")
