"""Access tokens kept in the store, so every instance shares one; one refresh at a time.

WeChat invalidates a classic token when a new one is fetched (after a 5-minute overlap), so
instances that each fetch their own knock each other out (spec §9.4). Here the token lives in
the store; a refresh takes the store's lock and reads the store again once it holds it, so
whoever waited finds the token the holder just fetched instead of fetching another. Tokens are
refreshed ahead of expiry; one WeChat refused is replaced only if nobody replaced it already.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from chatgate.channels.wechat_mp.api import WeChatHTTP
from chatgate.channels.wechat_mp.errcodes import WeChatAPIError
from chatgate.channels.wechat_mp.inbound import CHANNEL
from chatgate.core.telemetry import NO_TELEMETRY, Telemetry
from chatgate.store.base import Store

log = logging.getLogger(__name__)

TokenSourceName = Literal["stable", "classic"]

STABLE_TOKEN_PATH = "/cgi-bin/stable_token"
CLASSIC_TOKEN_PATH = "/cgi-bin/token"


def token_key(source: TokenSourceName, appid: str) -> str:
    return f"wechat_mp:token:{source}:{appid}"


def refresh_lock_name(source: TokenSourceName, appid: str) -> str:
    return f"wechat_mp:token-refresh:{source}:{appid}"


@dataclass(frozen=True, slots=True)
class CachedToken:
    value: str
    refresh_at: float  # after this, the next caller refreshes it
    expires_at: float  # WeChat stops accepting it (as far as we know)

    def to_json(self) -> str:
        return json.dumps(
            {"value": self.value, "refresh_at": self.refresh_at, "expires_at": self.expires_at}
        )

    @classmethod
    def from_json(cls, raw: str) -> CachedToken | None:
        try:
            data = json.loads(raw)
            return cls(str(data["value"]), float(data["refresh_at"]), float(data["expires_at"]))
        except (ValueError, KeyError, TypeError):
            return None


class TokenManager:
    """The access token of one AppID, fetched from ``stable_token`` (default) or ``token``.

    ``ahead`` is how long before expiry a token is refreshed. Stable tokens are renewed by
    WeChat itself 5 minutes before they expire, so ``ahead`` stays under that.
    """

    def __init__(
        self,
        store: Store,
        http: WeChatHTTP,
        *,
        appid: str,
        secret: str,
        source: TokenSourceName = "stable",
        ahead: float = 120.0,
        lock_ttl: float = 30.0,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._store = store
        self._http = http
        self._telemetry = telemetry
        self._appid = appid
        self._secret = secret
        self._source = source
        self._ahead = ahead
        self._lock_ttl = lock_ttl
        self._clock = clock
        self._key = token_key(source, appid)
        self._lock_name = refresh_lock_name(source, appid)
        # Callers in this process queue here, so only one of them waits on the store's lock.
        self._local = asyncio.Lock()
        # The last token this process read or fetched: the store is read again once it is due
        # for a refresh, or when WeChat refuses it.
        self._memo: CachedToken | None = None

    async def get(self) -> str:
        memo = self._memo
        if memo is not None and self._clock() < memo.refresh_at:
            return memo.value
        cached = self._memo = await self._read()
        if cached is not None and self._clock() < cached.refresh_at:
            return cached.value
        return await self._refresh(None if cached is None else cached.value, rejected=False)

    async def replace(self, rejected: str) -> str:
        return await self._refresh(rejected, rejected=True)

    async def _read(self) -> CachedToken | None:
        raw = await self._store.kv_get(self._key)
        return None if raw is None else CachedToken.from_json(raw)

    async def _refresh(self, stale: str | None, *, rejected: bool) -> str:
        async with self._local, self._store.lock(self._lock_name, ttl=self._lock_ttl):
            # Whoever held the lock before us may have refreshed already.
            cached = self._memo = await self._read()
            now = self._clock()
            if cached is not None and now < cached.expires_at:
                if cached.value != stale:
                    return cached.value
                if not rejected and now < cached.refresh_at:
                    return cached.value
            try:
                fresh = await self._fetch()
            except WeChatAPIError as exc:
                if not rejected and cached is not None and now < cached.expires_at:
                    log.warning("access token refresh failed (%s); using it until expiry", exc)
                    return cached.value
                raise
            self._telemetry.token_refresh(CHANNEL)
            await self._store.kv_set(
                self._key, fresh.to_json(), ttl=max(1.0, fresh.expires_at - self._clock())
            )
            self._memo = fresh
            log.info(
                "new WeChat access token from %s, valid %.0fs",
                self._source,
                fresh.expires_at - self._clock(),
            )
            return fresh.value

    async def _fetch(self) -> CachedToken:
        path = STABLE_TOKEN_PATH if self._source == "stable" else CLASSIC_TOKEN_PATH
        grant = {"grant_type": "client_credential", "appid": self._appid, "secret": self._secret}
        try:
            # The store's lock is not renewed: finish well inside it, or another may enter.
            async with asyncio.timeout(self._lock_ttl * 0.8):
                if self._source == "stable":
                    data = await self._http.request(
                        "POST", path, payload={**grant, "force_refresh": False}
                    )
                else:
                    data = await self._http.request("GET", path, params=grant)
        except TimeoutError:
            raise WeChatAPIError(path, None, "timed out") from None
        value, expires_in = data.get("access_token"), data.get("expires_in")
        if not isinstance(value, str) or not value or not isinstance(expires_in, int | float):
            raise WeChatAPIError(path, None, "the answer holds no access_token / expires_in")
        now = self._clock()
        lifetime = float(expires_in)
        refresh_in = max(lifetime - self._ahead, lifetime / 2)
        return CachedToken(value, now + refresh_in, now + lifetime)
