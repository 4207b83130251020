"""Log context: the channel, message id, conversation and answer a log line is about.

Channels and the dispatcher bind these while they handle a message; every log line written
meanwhile — in that request, and in the answer job it starts (tasks copy the context they were
created in) — carries them, added by the app's log formatter. Context variables rather than
arguments, so that no function has to pass them along.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

# The fields, in the order log lines show them.
FIELDS = ("channel", "message_id", "conversation", "answer_id")

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("chatgate_log_context", default=_EMPTY)


def current() -> Mapping[str, str]:
    """The fields bound in the current context (read-only)."""
    return _context.get()


@contextmanager
def log_scope(**fields: str | None) -> Iterator[None]:
    """Bind ``fields`` (from ``FIELDS``) for the ``with`` block; ``None`` values are skipped."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _context.reset(token)


def answer_scope(conversation: str, message_id: str, answer_id: str) -> dict[str, str]:
    """The fields for work on one answer, for ``log_scope(**answer_scope(...))``."""
    return {
        "channel": conversation.split(":", 1)[0],
        "message_id": message_id,
        "conversation": conversation,
        "answer_id": answer_id,
    }
