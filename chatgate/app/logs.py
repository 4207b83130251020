"""Logging: one line per event, readable text or JSON, carrying the message's log context.

Every line gets the channel, message id, conversation key and answer id bound by
``chatgate.core.logcontext`` where the event happened. Secrets from the settings are masked
in every line as a last line of defence (the code never logs them on purpose), and message
text is logged only at debug level by the code that logs it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from chatgate.core.logcontext import FIELDS, current

LogFormat = Literal["text", "json"]

MASK = "***"
# Shorter "secrets" (a test token "abc") would mask ordinary words; real ones are longer.
_MIN_SECRET = 6
# Attributes every LogRecord has; anything else was passed in ``extra=`` and is logged too
# (but not uvicorn's ``color_message``, the same message with terminal colours).
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "color_message",
    *FIELDS,
}


class ContextFilter(logging.Filter):
    """Copies the current log context onto each record (as attributes named like ``FIELDS``).

    Installed on the handler, so it also sees records propagated from every logger.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        bound = current()
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, bound.get(name))
        return True


# Answer and history page paths carry capability tokens; an access log line must not hand
# out the page to whoever reads the logs.
_PAGE_TOKEN = re.compile(r"(/[ah]/)[A-Za-z0-9_-]{16,}")


class _Redacting(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)

    def redact(self, line: str) -> str:
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, MASK)
        return _PAGE_TOKEN.sub(rf"\g<1>{MASK}", line)


class TextFormatter(_Redacting):
    """``2026-11-21 10:00:00,123 INFO    chatgate.core.jobs: … [channel=… message_id=…]``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(secrets, fmt="%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(
            f"{name}={value}" for name in FIELDS if (value := getattr(record, name, None))
        )
        if context:
            head, sep, tail = line.partition("\n")  # keep a traceback below the context
            line = f"{head} [{context}]{sep}{tail}"
        return self.redact(line)


class JsonFormatter(_Redacting):
    """One JSON object per line: ts, level, logger, msg, the context fields, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return self.redact(json.dumps(entry, ensure_ascii=False))


def make_handler(
    fmt: LogFormat = "text", secrets: Iterable[str] = (), stream: Any = None
) -> logging.Handler:
    """A stream handler (stderr by default) with the context filter and the chosen format."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ContextFilter())
    formatter = JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets)
    handler.setFormatter(formatter)
    return handler


def configure_logging(
    level: str, fmt: LogFormat = "text", secrets: Iterable[str] = (), stream: Any = None
) -> None:
    """Send every log line (uvicorn's included) through one handler on the root logger."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(make_handler(fmt, secrets, stream))
    root.setLevel(level.upper())
    # uvicorn's loggers propagate to the root once uvicorn is told not to configure them.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Per-request lines from the HTTP client libraries say nothing an operator needs.
    for noisy in ("httpx", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
