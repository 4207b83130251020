"""The WeChat API client: errcodes in one place, bounded retries, one token retry, no leaks."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from chatgate.channels.wechat_mp.api import SEND_PATH, RetryPolicy, WeChatAPI, WeChatHTTP
from chatgate.channels.wechat_mp.errcodes import ErrorKind, WeChatAPIError, classify

BASE = "https://api.test"

Reply = Callable[[httpx.Request], httpx.Response]


def errcode(code: int, msg: str = "x") -> httpx.Response:
    return httpx.Response(200, json={"errcode": code, "errmsg": msg})


OK = errcode(0, "ok")


@dataclass
class Script:
    """Answers requests in order (the last one repeats) and records them."""

    replies: list[httpx.Response | Exception]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply


@dataclass
class Sleeps:
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def http_for(script: Script, sleeps: Sleeps | None = None) -> WeChatHTTP:
    client = httpx.AsyncClient(transport=httpx.MockTransport(script))
    return WeChatHTTP(client, BASE, retry=RetryPolicy(attempts=3), sleep=sleeps or Sleeps())


@dataclass
class Tokens:
    """A token source that hands out tok1, tok2, … and records replacements."""

    issued: int = 1
    replaced: list[str] = field(default_factory=list)

    async def get(self) -> str:
        return f"tok{self.issued}"

    async def replace(self, rejected: str) -> str:
        self.replaced.append(rejected)
        self.issued += 1
        return f"tok{self.issued}"


def test_errcodes_are_classified_in_one_place() -> None:
    assert classify(40001) is classify(42001) is classify(40014) is ErrorKind.TOKEN
    assert classify(-1) is ErrorKind.TRANSIENT
    assert classify(48001) is ErrorKind.FORBIDDEN
    assert (classify(45015), classify(45047)) == (ErrorKind.WINDOW, ErrorKind.CAP)
    assert (classify(45009), classify(40164)) == (ErrorKind.QUOTA, ErrorKind.IP)
    assert classify(99999) is ErrorKind.OTHER
    assert WeChatAPIError("/p", None, "timeout").kind is ErrorKind.TRANSIENT
    assert "45015" in str(WeChatAPIError("/p", 45015, "out of time"))


async def test_a_call_sends_utf8_json_and_returns_the_answer() -> None:
    script = Script([httpx.Response(200, json={"errcode": 0, "errmsg": "ok", "msgid": 7})])
    data = await http_for(script).request("POST", "/x", payload={"text": "你好"})
    assert data["msgid"] == 7
    sent = script.requests[0]
    assert str(sent.url) == BASE + "/x"
    assert "你好".encode() in sent.content  # not \u escapes, which some clients show verbatim
    assert json.loads(sent.content) == {"text": "你好"}


@pytest.mark.parametrize(
    "failure",
    [errcode(-1, "system error"), httpx.Response(502), httpx.ConnectError("refused")],
    ids=["errcode -1", "HTTP 502", "network"],
)
async def test_transient_failures_are_retried_with_growing_backoff(
    failure: httpx.Response | Exception,
) -> None:
    script, sleeps = Script([failure, failure, OK]), Sleeps()
    await http_for(script, sleeps).request("POST", "/x", payload={})
    assert len(script.requests) == 3
    assert sleeps.delays == [0.5, 1.0]


async def test_retries_are_bounded_and_the_last_error_is_raised() -> None:
    script, sleeps = Script([errcode(-1)]), Sleeps()
    with pytest.raises(WeChatAPIError) as caught:
        await http_for(script, sleeps).request("POST", "/x", payload={})
    assert caught.value.errcode == -1 and caught.value.kind is ErrorKind.TRANSIENT
    assert len(script.requests) == 3 and len(sleeps.delays) == 2


@pytest.mark.parametrize("code", [45015, 45047, 48001, 45002, 40164])
async def test_errors_a_retry_cannot_fix_are_not_retried(code: int) -> None:
    script = Script([errcode(code)])
    with pytest.raises(WeChatAPIError) as caught:
        await http_for(script).request("POST", "/x", payload={})
    assert caught.value.errcode == code
    assert len(script.requests) == 1


async def test_a_refused_token_is_replaced_once_and_the_call_retried_once() -> None:
    script = Script([errcode(40001), OK])
    tokens = Tokens()
    await WeChatAPI(http_for(script), tokens).send_text("openid-1", "hi")
    assert tokens.replaced == ["tok1"]
    assert [r.url.params["access_token"] for r in script.requests] == ["tok1", "tok2"]
    assert json.loads(script.requests[1].content) == {
        "touser": "openid-1",
        "msgtype": "text",
        "text": {"content": "hi"},
    }
    assert script.requests[1].url.path == SEND_PATH


async def test_a_second_token_refusal_is_raised_not_looped() -> None:
    script = Script([errcode(42001)])
    tokens = Tokens()
    with pytest.raises(WeChatAPIError) as caught:
        await WeChatAPI(http_for(script), tokens).send_text("openid-1", "hi")
    assert caught.value.kind is ErrorKind.TOKEN
    assert len(script.requests) == 2 and tokens.replaced == ["tok1"]


async def test_typing_is_tried_once() -> None:
    script = Script([errcode(-1)])
    with pytest.raises(WeChatAPIError):
        await WeChatAPI(http_for(script), Tokens()).typing("openid-1")
    assert len(script.requests) == 1
    assert json.loads(script.requests[0].content) == {"touser": "openid-1", "command": "Typing"}


async def test_owner_errors_are_logged_once_with_what_to_do(
    caplog: pytest.LogCaptureFixture,
) -> None:
    script = Script([errcode(40164, "invalid ip"), errcode(40164), errcode(45009), OK])
    http = http_for(script)
    caplog.set_level(logging.ERROR, logger="chatgate.channels.wechat_mp.api")
    for _ in range(3):
        with pytest.raises(WeChatAPIError):
            await http.request("POST", "/x", payload={})
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "40164" in errors[0] and "whitelist" in errors[0]
    assert "45009" in errors[1] and "quota" in errors[1]


async def test_tokens_and_secrets_never_reach_the_log(caplog: pytest.LogCaptureFixture) -> None:
    script = Script([httpx.Response(200, json={"access_token": "TOKEN-xyz", "expires_in": 7200})])
    caplog.set_level(logging.DEBUG)
    http = http_for(script)
    await http.request("GET", "/cgi-bin/token", params={"appid": "wx1", "secret": "SECRET-abc"})
    await WeChatAPI(http_for(Script([OK])), _Fixed("TOKEN-xyz")).send_text("u", "hi")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP Request" in logged  # httpx logs its requests …
    assert "SECRET-abc" not in logged and "TOKEN-xyz" not in logged  # … with the values masked
    assert "secret=***" in logged and "access_token=***" in logged


@dataclass
class _Fixed:
    value: str

    async def get(self) -> str:
        return self.value

    async def replace(self, rejected: str) -> str:
        return self.value


async def test_each_call_carries_the_token_of_its_time_however_many_tokens_came_before() -> None:
    script = Script([OK])
    http = http_for(script)
    for issued in range(1, 101):
        await WeChatAPI(http, Tokens(issued=issued)).send_text("openid-1", "hi")
    assert [r.url.params["access_token"] for r in script.requests] == [
        f"tok{i}" for i in range(1, 101)
    ]
    assert len(http._urls) <= 32  # the URLs it keeps for reuse stay few


async def test_every_call_carries_the_configured_timeout() -> None:
    script = Script([OK])
    client = httpx.AsyncClient(transport=httpx.MockTransport(script), timeout=60.0)
    http = WeChatHTTP(client, BASE, timeout=0.25)
    await http.request("POST", "/x", payload={})
    await http.request("GET", "/y", params={"appid": "a"})
    assert [r.extensions["timeout"] for r in script.requests] == 2 * [
        {"connect": 0.25, "read": 0.25, "write": 0.25, "pool": 0.25}
    ]
