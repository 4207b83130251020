"""Log context: the channel, message id, conversation and answer a log line is about.

Channels and the dispatcher bind these while they handle a message; every log line written
meanwhile — in that request, and in the answer job it starts (tasks copy the context they were
created in) — carries them, added by the app's log formatter. Context variables rather than
arguments, so that no function has to pass them along.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from types import MappingProxyType, TracebackType

# The fields, in the order log lines show them.
FIELDS = ("channel", "message_id", "conversation", "answer_id")
_KNOWN = frozenset(FIELDS)

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("chatgate_log_context", default=_EMPTY)


def current() -> Mapping[str, str]:
    """The fields bound in the current context (read-only)."""
    return _context.get()


class _Scope:
    # A class rather than ``@contextmanager``: scopes are entered several times on every
    # webhook acknowledgement, and a generator-based one costs several times as much.
    __slots__ = ("_fields", "_token")

    def __init__(self, fields: dict[str, str | None]) -> None:
        self._fields = fields
        self._token: Token[Mapping[str, str]] | None = None

    def __enter__(self) -> None:
        current = _context.get()
        changed = {
            key: value
            for key, value in self._fields.items()
            if value is not None and current.get(key) != value
        }
        if not changed:
            return  # nested scopes often bind what is bound already: nothing to set or reset
        self._token = _context.set(MappingProxyType({**current, **changed}))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _context.reset(self._token)
            self._token = None


def log_scope(**fields: str | None) -> AbstractContextManager[None]:
    """Bind ``fields`` (from ``FIELDS``) for the ``with`` block; ``None`` values are skipped."""
    if not _KNOWN.issuperset(fields):
        unknown = set(fields) - _KNOWN
        raise ValueError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    return _Scope(fields)


def answer_scope(conversation: str, message_id: str, answer_id: str) -> dict[str, str]:
    """The fields for work on one answer, for ``log_scope(**answer_scope(...))``."""
    return {
        "channel": conversation.split(":", 1)[0],
        "message_id": message_id,
        "conversation": conversation,
        "answer_id": answer_id,
    }
