"""The token manager: one token in the store for every instance, refreshed once, ahead of expiry."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import httpx
import pytest

from chatgate.channels.wechat_mp.api import RetryPolicy, WeChatHTTP
from chatgate.channels.wechat_mp.errcodes import WeChatAPIError
from chatgate.channels.wechat_mp.token import TokenManager, TokenSourceName
from chatgate.store.memory import MemoryStore
from tests.clock import FrozenClock

APPID = "wxtoken0000000001"
SECRET = "app-secret"


@dataclass
class WeChatTokens:
    """A token endpoint: a new token per call (after an optional pause), or scripted errors."""

    expires_in: int = 7200
    pause: float = 0.0
    errors: list[int] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.pause:
            await asyncio.sleep(self.pause)
        if self.errors:
            return httpx.Response(200, json={"errcode": self.errors.pop(0), "errmsg": "no"})
        token = f"token-{len(self.requests)}"
        return httpx.Response(200, json={"access_token": token, "expires_in": self.expires_in})


async def no_sleep(seconds: float) -> None:
    return None


def manager(
    store: MemoryStore,
    wechat: WeChatTokens,
    clock: FrozenClock,
    source: TokenSourceName = "stable",
) -> TokenManager:
    client = httpx.AsyncClient(transport=httpx.MockTransport(wechat))
    http = WeChatHTTP(client, "https://api.test", retry=RetryPolicy(attempts=2), sleep=no_sleep)
    return TokenManager(store, http, appid=APPID, secret=SECRET, source=source, clock=clock)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def store(clock: FrozenClock) -> MemoryStore:
    return MemoryStore(clock=clock, poll_interval=0.01)


async def test_stable_token_by_default_posted_as_json(
    store: MemoryStore, clock: FrozenClock
) -> None:
    wechat = WeChatTokens()
    assert await manager(store, wechat, clock).get() == "token-1"
    request = wechat.requests[0]
    assert (request.method, request.url.path) == ("POST", "/cgi-bin/stable_token")
    assert json.loads(request.content) == {
        "grant_type": "client_credential",
        "appid": APPID,
        "secret": SECRET,
        "force_refresh": False,
    }


async def test_classic_token_by_option(store: MemoryStore, clock: FrozenClock) -> None:
    wechat = WeChatTokens()
    assert await manager(store, wechat, clock, "classic").get() == "token-1"
    request = wechat.requests[0]
    assert (request.method, request.url.path) == ("GET", "/cgi-bin/token")
    assert dict(request.url.params) == {
        "grant_type": "client_credential",
        "appid": APPID,
        "secret": SECRET,
    }


async def test_the_token_is_kept_in_the_store_and_shared_by_every_instance(
    store: MemoryStore, clock: FrozenClock
) -> None:
    wechat = WeChatTokens()
    first, second = manager(store, wechat, clock), manager(store, wechat, clock)
    assert await first.get() == "token-1"
    assert await first.get() == "token-1"
    assert await second.get() == "token-1"
    assert len(wechat.requests) == 1


async def test_concurrent_callers_on_two_instances_fetch_once(
    store: MemoryStore, clock: FrozenClock
) -> None:
    wechat = WeChatTokens(pause=0.05)
    instances = [manager(store, wechat, clock) for _ in range(2)]
    tokens = await asyncio.gather(*(m.get() for m in instances for _ in range(10)))
    assert set(tokens) == {"token-1"}
    assert len(wechat.requests) == 1


async def test_refreshed_ahead_of_expiry(store: MemoryStore, clock: FrozenClock) -> None:
    wechat = WeChatTokens()
    tokens = manager(store, wechat, clock)
    assert await tokens.get() == "token-1"
    clock.advance(7200 - 100)  # still valid, but within the refresh margin
    assert await tokens.get() == "token-2"
    clock.advance(100)
    assert await tokens.get() == "token-2"
    assert len(wechat.requests) == 2


async def test_a_refused_token_is_replaced_once_however_many_report_it(
    store: MemoryStore, clock: FrozenClock
) -> None:
    wechat = WeChatTokens(pause=0.02)
    instances = [manager(store, wechat, clock) for _ in range(2)]
    assert await instances[0].get() == "token-1"
    replaced = await asyncio.gather(*(m.replace("token-1") for m in instances for _ in range(5)))
    assert set(replaced) == {"token-2"}
    assert len(wechat.requests) == 2
    # A report about a token already replaced changes nothing.
    assert await instances[1].replace("token-1") == "token-2"
    assert len(wechat.requests) == 2


async def test_a_failed_refresh_keeps_using_the_token_until_it_expires(
    store: MemoryStore, clock: FrozenClock
) -> None:
    wechat = WeChatTokens()
    tokens = manager(store, wechat, clock)
    assert await tokens.get() == "token-1"
    clock.advance(7200 - 60)
    wechat.errors = [-1, -1]
    assert await tokens.get() == "token-1"
    clock.advance(61)
    wechat.errors = [-1, -1]
    with pytest.raises(WeChatAPIError):
        await tokens.get()


async def test_wrong_credentials_raise_with_the_errcode(
    store: MemoryStore, clock: FrozenClock
) -> None:
    wechat = WeChatTokens(errors=[40125])
    with pytest.raises(WeChatAPIError) as caught:
        await manager(store, wechat, clock).get()
    assert caught.value.errcode == 40125
    assert SECRET not in str(caught.value)
