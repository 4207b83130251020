"""Async client of WeChat's server API: JSON calls with errcode handling, customer-service sends.

``WeChatHTTP`` makes one kind of call — JSON in, JSON out, ``errcode`` turned into
``WeChatAPIError`` — and retries what a retry can fix (WeChat busy, 5xx, network) with a
bounded backoff. ``WeChatAPI`` adds the access token: a call refused for its token gets a
fresh one and is tried once more. Both run on an injected ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from chatgate.channels.wechat_mp.errcodes import ErrorKind, WeChatAPIError
from chatgate.channels.wechat_mp.inbound import CHANNEL
from chatgate.core.telemetry import NO_TELEMETRY, Telemetry

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.weixin.qq.com"
# Calls in flight at once from one process; more wait their turn.
API_CONCURRENCY = 16
SEND_PATH = "/cgi-bin/message/custom/send"
TYPING_PATH = "/cgi-bin/message/custom/typing"

_JSON_CONTENT = {"Content-Type": "application/json; charset=utf-8"}
# Request URLs remembered: a few paths, each with the current access token.
_URLS_KEPT = 32

# Errors the HTTP layer reports to the owner itself; 48001 is the pusher's to report, as it
# also decides what happens next.
_ALERTED_HERE = frozenset({ErrorKind.IP, ErrorKind.QUOTA, ErrorKind.CREDENTIALS, ErrorKind.RATE})


class TokenSource(Protocol):
    async def get(self) -> str:
        """A valid access token."""

    async def replace(self, rejected: str) -> str:
        """A token other than ``rejected``, which WeChat just refused."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff for transient failures: ``attempts`` tries in all."""

    attempts: int = 3
    first_delay: float = 0.5
    max_delay: float = 4.0

    def delay(self, failed: int) -> float:
        """Seconds to wait after the ``failed``-th failed try (1-based)."""
        return float(min(self.max_delay, self.first_delay * 2 ** (failed - 1)))


_SECRET_PARAM = re.compile(r"((?:access_token|secret)=)[^&\s\"']+")


def redact(text: str) -> str:
    """``text`` with access tokens and secrets in query strings masked."""
    return _SECRET_PARAM.sub(r"\1***", text)


class _RedactSecrets(logging.Filter):
    """Masks access tokens and secrets in URLs that httpx logs at INFO level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._scrub(arg) for arg in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True

    def _scrub(self, value: object) -> object:
        if isinstance(value, str | httpx.URL):
            text = str(value)
            return redact(text) if _SECRET_PARAM.search(text) else value
        return value


def redact_httpx_logs() -> None:
    """Keep tokens and the AppSecret out of httpx's request log lines (idempotent)."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactSecrets) for f in logger.filters):
        logger.addFilter(_RedactSecrets())


class WeChatHTTP:
    """JSON calls to WeChat's API with errcode handling and bounded retries."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str = DEFAULT_API_BASE,
        *,
        retry: RetryPolicy = RetryPolicy(),
        timeout: float = 10.0,
        concurrency: int = API_CONCURRENCY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._client = client
        self._telemetry = telemetry
        self._base = base_url.rstrip("/")
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], httpx.URL] = {}
        # Calls beyond this wait here rather than in httpx's pool, whose bookkeeping grows
        # with every queued request (hundreds of typing indicators at once, say).
        self._slots = asyncio.Semaphore(concurrency)
        self._retry = retry
        self._timeout = {"timeout": httpx.Timeout(timeout).as_dict()}
        self._sleep = sleep
        self._alerted: set[ErrorKind] = set()
        redact_httpx_logs()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        payload: dict[str, Any] | None = None,
        attempts: int | None = None,
    ) -> dict[str, Any]:
        """The JSON answer of a successful call; raises ``WeChatAPIError`` otherwise.

        Transient failures are retried, ``attempts`` tries in all (default: the policy's).
        """
        tries = attempts or self._retry.attempts
        for attempt in range(1, tries + 1):
            try:
                data = await self._once(method, path, params, payload)
            except WeChatAPIError as exc:
                code = str(exc.errcode) if exc.errcode is not None else "no_answer"
                self._telemetry.platform_api_error(CHANNEL, code)
                if exc.kind is not ErrorKind.TRANSIENT or attempt == tries:
                    self._alert(exc)
                    raise
                delay = self._retry.delay(attempt)
                log.info("%s; try %d of %d again in %.1fs", exc, attempt + 1, tries, delay)
                await self._sleep(delay)
                continue
            self._alerted.clear()
            return data
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        payload: dict[str, Any] | None,
    ) -> dict[str, Any]:
        # WeChat wants UTF-8 as is: \u escapes reach some users verbatim.
        content = None if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        headers = _JSON_CONTENT if content else None
        # Built here, not by ``client.request``: its URL merging and parsing cost more CPU than
        # the rest of the call, and the URL repeats (one token serves two hours of calls).
        request = httpx.Request(
            method,
            self._url(path, params),
            content=content,
            headers=headers,
            extensions=self._timeout,
        )
        try:
            async with self._slots:
                response = await self._client.send(request)
        except httpx.HTTPError as exc:
            reason = redact(f"{type(exc).__name__}: {exc}")
            raise WeChatAPIError(path, None, reason) from None
        if response.status_code != 200:
            raise WeChatAPIError(path, None, f"HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise WeChatAPIError(path, None, "the answer is not JSON") from None
        if not isinstance(data, dict):
            raise WeChatAPIError(path, None, "the answer is not a JSON object")
        errcode = data.get("errcode", 0)
        if not isinstance(errcode, int):
            raise WeChatAPIError(path, None, f"errcode {errcode!r} is not a number")
        if errcode != 0:
            raise WeChatAPIError(path, errcode, str(data.get("errmsg", "")))
        return data

    def _url(self, path: str, params: dict[str, str] | None) -> httpx.URL:
        key = (path, tuple(params.items()) if params else ())
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) >= _URLS_KEPT:  # old tokens' URLs
                self._urls.clear()
            url = self._urls[key] = httpx.URL(self._base + path, params=params)
        return url

    def _alert(self, exc: WeChatAPIError) -> None:
        """Tell the owner, once, about an error only they can fix."""
        action = exc.owner_action
        if action is None or exc.kind not in _ALERTED_HERE or exc.kind in self._alerted:
            return
        self._alerted.add(exc.kind)
        log.error("WeChat API: %s. What to do: %s", exc, action)


class WeChatAPI:
    """Token-authenticated calls: the customer-service messages and typing chatgate sends."""

    def __init__(self, http: WeChatHTTP, tokens: TokenSource) -> None:
        self._http = http
        self._tokens = tokens

    async def call(
        self, path: str, payload: dict[str, Any], *, attempts: int | None = None
    ) -> dict[str, Any]:
        """POST ``payload`` with the access token; a token WeChat refuses is replaced once."""
        token = await self._tokens.get()
        try:
            return await self._post(path, token, payload, attempts)
        except WeChatAPIError as exc:
            if exc.kind is not ErrorKind.TOKEN:
                raise
            log.info("%s: trying once more with a fresh access token", exc)
        fresh = await self._tokens.replace(token)
        return await self._post(path, fresh, payload, attempts)

    async def _post(
        self, path: str, token: str, payload: dict[str, Any], attempts: int | None
    ) -> dict[str, Any]:
        return await self._http.request(
            "POST", path, params={"access_token": token}, payload=payload, attempts=attempts
        )

    async def send_text(self, openid: str, content: str, *, attempts: int | None = None) -> None:
        """A customer-service text message to ``openid``; ``attempts`` as for ``request``."""
        payload = {"touser": openid, "msgtype": "text", "text": {"content": content}}
        await self.call(SEND_PATH, payload, attempts=attempts)

    async def typing(self, openid: str, command: str = "Typing") -> None:
        """Show (``Typing``) or hide (``CancelTyping``) the typing indicator; tried once."""
        await self.call(TYPING_PATH, {"touser": openid, "command": command}, attempts=1)
