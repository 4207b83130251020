"""State: one Store protocol, with memory, SQLite and Redis implementations."""

from __future__ import annotations

from chatgate.config import REDIS_SCHEMES, redis_url_problem
from chatgate.errors import ConfigError
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus, Store, Turn

__all__ = ["AnswerKind", "AnswerRecord", "AnswerStatus", "Store", "Turn", "open_store"]

_SQLITE_PREFIX = "sqlite:///"


def open_store(url: str, *, redis_prefix: str = "chatgate:") -> Store:
    """The store a ``CHATGATE_STORE`` URL names, not yet opened: ``await store.open()`` next.

    ``memory://`` keeps everything in this process. ``sqlite:///PATH`` is a file; the path is
    relative to the working directory, or absolute with a fourth slash
    (``sqlite:////var/lib/chatgate.db``). ``redis://HOST:PORT/DB`` (``rediss://`` for TLS)
    is shared by every instance using the same ``redis_prefix``.
    """
    # Backends are imported here, not at the top: importing the protocol must not pull in
    # a database driver.
    if url == "memory://":
        from chatgate.store.memory import MemoryStore

        return MemoryStore()
    if url.startswith(_SQLITE_PREFIX) and len(url) > len(_SQLITE_PREFIX):
        from chatgate.store.sqlite import SqliteStore

        return SqliteStore(url[len(_SQLITE_PREFIX) :])
    if url.startswith(REDIS_SCHEMES):
        problem = redis_url_problem(url)
        if problem is not None:
            raise ConfigError(f"store: {problem}")
        from chatgate.store.redis import RedisStore

        return RedisStore(url, prefix=redis_prefix)
    raise ConfigError(
        f"store: unsupported URL {url!r}; use memory://, sqlite:///PATH or redis://HOST:PORT/DB"
    )
