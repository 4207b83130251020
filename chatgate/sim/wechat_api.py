"""A fake WeChat server API: access tokens, customer-service messages and typing, by its rules.

It enforces what a gateway must get right (`../shared/specs/wechat-mp.md` §5–§6):

- tokens: `/cgi-bin/token` issues a new token each call and the previous one stays valid for
  `token_grace` seconds only; `/cgi-bin/stable_token` returns the same token while it has more
  than `stable_renew` seconds left (`force_refresh` replaces it at once); the two are isolated.
  An unknown or superseded token gets 40001, an expired one 42001;
- customer-service text (`/cgi-bin/message/custom/send`): 48001 for an unverified account,
  45015 outside the 48 h window since the user last wrote, 45047 once `per_message_cap`
  messages were sent since that message, 45002 above `max_text_bytes` UTF-8 bytes;
- typing (`/cgi-bin/message/custom/typing`): 45080 without an interaction in the last 30 s,
  45081 while the indicator is still showing (it lasts 15 s), 45072 for an unknown command.

It learns when users write through `user_wrote` (pass it as `WeChatSim(on_message=...)`),
records what each user received and when, and injects failures: `fail_next` (errcodes or
HTTP statuses), `invalidate_tokens` (behind the gateway's back). `advance` moves its clock.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from chatgate.sim.server import LoopbackServer

__all__ = ["APICall", "Delivered", "Failure", "TokenIssued", "TypingShown", "WeChatAPISim"]

SEND_PATH = "/cgi-bin/message/custom/send"
TYPING_PATH = "/cgi-bin/message/custom/typing"
TOKEN_PATH = "/cgi-bin/token"
STABLE_TOKEN_PATH = "/cgi-bin/stable_token"

_ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40125: "invalid appsecret",
    40164: "invalid ip 127.0.0.1, not in whitelist",
    41001: "access_token missing",
    42001: "access_token expired",
    43004: "require subscribe",
    44002: "empty post data",
    45002: "content size out of limit",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    45072: "command invalid",
    45080: "has not sent message to user in the last 30 seconds",
    45081: "already in typing state",
    47001: "data format error",
    48001: "api unauthorized",
}


@dataclass(frozen=True)
class Delivered:
    """A customer-service message WeChat accepted: the user sees it."""

    user: str
    msgtype: str
    text: str
    at: float


@dataclass(frozen=True)
class TypingShown:
    user: str
    command: str
    at: float


@dataclass(frozen=True)
class TokenIssued:
    """One call to a token endpoint that handed out a token."""

    source: str  # "classic" | "stable"
    token: str
    at: float
    force_refresh: bool = False


@dataclass(frozen=True)
class APICall:
    """Every request, as received, with the errcode it got (0 = success)."""

    path: str
    body: dict[str, Any]
    errcode: int
    at: float
    status: int = 200


@dataclass
class Failure:
    """An injected failure: the next `times` calls to `paths` get it before anything else."""

    times: int
    errcode: int = -1
    status: int = 200
    paths: tuple[str, ...] = (SEND_PATH,)


@dataclass
class _Token:
    source: str
    expires_at: float
    valid_until: float  # expires_at, or earlier once superseded


@dataclass
class _User:
    last_message: float | None = None  # opens the 48 h window and the per-message quota
    last_interaction: float | None = None  # any message or event, for typing
    sent_since_message: int = 0
    typing_until: float = 0.0


@dataclass
class _State:
    tokens: dict[str, _Token] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)  # source → newest token
    users: dict[str, _User] = field(default_factory=dict)


class WeChatAPISim:
    """`async with WeChatAPISim().serve() as base:` gives a base URL like api.weixin.qq.com's."""

    def __init__(
        self,
        *,
        appid: str = "wx0123456789abcdef",
        secret: str = "sim-app-secret",
        verified: bool = True,
        ip_whitelisted: bool = True,
        token_ttl: float = 7200.0,
        token_grace: float = 300.0,
        stable_renew: float = 300.0,
        token_daily_quota: int = 2000,
        window: float = 48 * 3600.0,
        per_message_cap: int = 5,
        max_text_bytes: int = 2048,
        typing_needs_interaction: float = 30.0,
        typing_lasts: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.appid = appid
        self.secret = secret
        self.verified = verified
        self.ip_whitelisted = ip_whitelisted
        self.token_ttl = token_ttl
        self.token_grace = token_grace
        self.stable_renew = stable_renew
        self.token_daily_quota = token_daily_quota
        self.window = window
        self.per_message_cap = per_message_cap
        self.max_text_bytes = max_text_bytes
        self.typing_needs_interaction = typing_needs_interaction
        self.typing_lasts = typing_lasts
        self._clock = clock
        self._offset = 0.0
        self._state = _State()
        self._failures: list[Failure] = []
        self.calls: list[APICall] = []
        self.delivered: list[Delivered] = []
        self.typing: list[TypingShown] = []
        self.tokens_issued: list[TokenIssued] = []
        self._token_calls: Counter[str] = Counter()
        self.app = Starlette(
            routes=[
                Route(TOKEN_PATH, self._classic_token, methods=["GET"]),
                Route(STABLE_TOKEN_PATH, self._stable_token, methods=["POST"]),
                Route(SEND_PATH, self._send, methods=["POST"]),
                Route(TYPING_PATH, self._typing, methods=["POST"]),
            ]
        )

    # -- control --------------------------------------------------------------------------
    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move this server's clock forward (the 48 h window, token expiry)."""
        self._offset += seconds

    def user_wrote(self, user: str, msg_type: str = "text") -> None:
        """A user sent a message (or, with msg_type "event", interacted): opens the windows."""
        state = self._state.users.setdefault(user, _User())
        now = self.now()
        state.last_interaction = now
        if msg_type != "event":
            state.last_message = now
            state.sent_since_message = 0

    def fail_next(
        self,
        times: int = 1,
        *,
        errcode: int = -1,
        status: int = 200,
        paths: tuple[str, ...] = (SEND_PATH,),
    ) -> None:
        """The next `times` calls to `paths` fail with `errcode` (or HTTP `status` if not 200)."""
        self._failures.append(Failure(times, errcode, status, paths))

    def invalidate_tokens(self) -> None:
        """Every token stops working now, as if another party had refreshed them: 40001."""
        for token in self._state.tokens.values():
            token.valid_until = min(token.valid_until, self.now() - 1)
        self._state.current.clear()

    def received(self, user: str) -> list[str]:
        """The texts `user` was sent, in order."""
        return [d.text for d in self.delivered if d.user == user]

    def token_calls(self, source: str | None = None) -> int:
        """How many tokens were handed out, from one endpoint or both."""
        return sum(1 for t in self.tokens_issued if source is None or t.source == source)

    def errcodes(self, path: str = SEND_PATH) -> list[int]:
        """The errcode of every call to `path`, in order (0 = accepted)."""
        return [c.errcode for c in self.calls if c.path == path]

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Serve on a free loopback port; yields the base URL (no trailing slash)."""
        async with LoopbackServer(self.app) as server:
            yield server.url

    # -- helpers --------------------------------------------------------------------------
    def _answer(
        self, path: str, body: dict[str, Any], errcode: int, success: dict[str, Any] | None = None
    ) -> Response:
        """WeChat's JSON answer; `success` replaces the errcode body when errcode is 0."""
        self.calls.append(APICall(path, body, errcode, self.now()))
        if errcode == 0 and success is not None:
            return JSONResponse(success)
        errmsg = "ok" if errcode == 0 else _ERRMSG.get(errcode, "error")
        return JSONResponse({"errcode": errcode, "errmsg": errmsg})

    def _injected(self, path: str, body: dict[str, Any]) -> Response | None:
        for failure in self._failures:
            if failure.times > 0 and path in failure.paths:
                failure.times -= 1
                if failure.status != 200:
                    self.calls.append(APICall(path, body, -1, self.now(), failure.status))
                    return PlainTextResponse("upstream error", status_code=failure.status)
                return self._answer(path, body, failure.errcode)
        return None

    def _check_token(self, request: Request) -> int:
        value = request.query_params.get("access_token")
        if not value:
            return 41001
        token = self._state.tokens.get(value)
        if token is None:
            return 40001
        if self.now() >= token.valid_until:
            # Run out on its own: expired; cut short (superseded, invalidated): not latest.
            return 42001 if token.valid_until >= token.expires_at else 40001
        return 0

    def _issue(self, source: str, *, force: bool = False) -> tuple[str, float]:
        now = self.now()
        value = secrets.token_urlsafe(48)
        previous = self._state.current.get(source)
        if previous is not None:
            old = self._state.tokens[previous]
            keep = 0.0 if force else self.token_grace
            old.valid_until = min(old.valid_until, now + keep)
        expires_at = now + self.token_ttl
        self._state.tokens[value] = _Token(source, expires_at, expires_at)
        self._state.current[source] = value
        self.tokens_issued.append(TokenIssued(source, value, now, force))
        return value, self.token_ttl

    def _credentials_error(self, appid: object, secret: object) -> int:
        if appid != self.appid:
            return 40013
        if secret != self.secret:
            return 40125
        if not self.ip_whitelisted:
            return 40164
        self._token_calls["day"] += 1
        if self._token_calls["day"] > self.token_daily_quota:
            return 45009
        return 0

    async def _json(self, request: Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    # -- endpoints ------------------------------------------------------------------------
    async def _classic_token(self, request: Request) -> Response:
        params = dict(request.query_params)
        shown = {k: v for k, v in params.items() if k != "secret"}
        if injected := self._injected(TOKEN_PATH, shown):
            return injected
        if params.get("grant_type") != "client_credential":
            return self._answer(TOKEN_PATH, shown, 40002)
        if code := self._credentials_error(params.get("appid"), params.get("secret")):
            return self._answer(TOKEN_PATH, shown, code)
        token, ttl = self._issue("classic")
        return self._answer(TOKEN_PATH, shown, 0, {"access_token": token, "expires_in": ttl})

    async def _stable_token(self, request: Request) -> Response:
        body = await self._json(request)
        if body is None:
            return self._answer(STABLE_TOKEN_PATH, {}, 47001)
        shown = {k: v for k, v in body.items() if k != "secret"}
        if injected := self._injected(STABLE_TOKEN_PATH, shown):
            return injected
        if body.get("grant_type") != "client_credential":
            return self._answer(STABLE_TOKEN_PATH, shown, 40002)
        if code := self._credentials_error(body.get("appid"), body.get("secret")):
            return self._answer(STABLE_TOKEN_PATH, shown, code)
        force = body.get("force_refresh") is True
        current = self._state.current.get("stable")
        now = self.now()
        if current is not None and not force:
            token = self._state.tokens[current]
            left = min(token.expires_at, token.valid_until) - now
            if left > self.stable_renew:
                extra = {"access_token": current, "expires_in": int(left)}
                return self._answer(STABLE_TOKEN_PATH, shown, 0, extra)
        value, ttl = self._issue("stable", force=force)
        extra = {"access_token": value, "expires_in": ttl}
        return self._answer(STABLE_TOKEN_PATH, shown, 0, extra)

    async def _send(self, request: Request) -> Response:
        body = await self._json(request)
        if body is None:
            return self._answer(SEND_PATH, {}, 47001)
        if injected := self._injected(SEND_PATH, body):
            return injected
        if code := self._check_token(request):
            return self._answer(SEND_PATH, body, code)
        if not self.verified:
            return self._answer(SEND_PATH, body, 48001)
        user = body.get("touser")
        msgtype = body.get("msgtype")
        if not isinstance(user, str) or not user or not isinstance(msgtype, str):
            return self._answer(SEND_PATH, body, 40003 if not user else 47001)
        state = self._state.users.get(user)
        now = self.now()
        if state is None or state.last_message is None or now - state.last_message > self.window:
            return self._answer(SEND_PATH, body, 45015)
        if state.sent_since_message >= self.per_message_cap:
            return self._answer(SEND_PATH, body, 45047)
        if msgtype == "text":
            text_field = body.get("text")
            content = text_field.get("content") if isinstance(text_field, dict) else None
            if not isinstance(content, str) or not content:
                return self._answer(SEND_PATH, body, 44002)
            if len(content.encode("utf-8")) > self.max_text_bytes:
                return self._answer(SEND_PATH, body, 45002)
            text = content
        else:
            text = f"[{msgtype}]"
        state.sent_since_message += 1
        state.typing_until = 0.0  # a message ends the typing indicator
        self.delivered.append(Delivered(user, msgtype, text, now))
        return self._answer(SEND_PATH, body, 0)

    async def _typing(self, request: Request) -> Response:
        body = await self._json(request)
        if body is None:
            return self._answer(TYPING_PATH, {}, 47001)
        if injected := self._injected(TYPING_PATH, body):
            return injected
        if code := self._check_token(request):
            return self._answer(TYPING_PATH, body, code)
        if not self.verified:
            return self._answer(TYPING_PATH, body, 48001)
        user, command = body.get("touser"), body.get("command")
        if command not in ("Typing", "CancelTyping"):
            return self._answer(TYPING_PATH, body, 45072)
        if not isinstance(user, str) or not user:
            return self._answer(TYPING_PATH, body, 40003)
        state = self._state.users.setdefault(user, _User())
        now = self.now()
        if (
            state.last_interaction is None
            or now - state.last_interaction > self.typing_needs_interaction
        ):
            return self._answer(TYPING_PATH, body, 45080)
        if command == "CancelTyping":
            state.typing_until = 0.0
        elif now < state.typing_until:
            return self._answer(TYPING_PATH, body, 45081)
        else:
            state.typing_until = now + self.typing_lasts
        self.typing.append(TypingShown(user, command, now))
        return self._answer(TYPING_PATH, body, 0)
