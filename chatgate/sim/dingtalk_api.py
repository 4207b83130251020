"""The fake DingTalk HTTP side: OpenAPI (token, robot sends, AI cards) and sessionWebhooks.

Every accepted message is recorded in the chat it lands in — a user's single chat (keyed by
the user's staff id) or a group (keyed by its openConversationId) — so a test reads what each
user and group saw, and how: through a sessionWebhook, the OpenAPI, or an AI card with its
whole update history. Calls are checked the way the spec documents them; what it leaves open
(the webhook's size error code, say) is marked so here. ``calls`` counts every OpenAPI call
by path, the token included, for the quota arithmetic.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chatgate.sim.dingtalk_records import Card, CardUpdate, Shown, WebhookCall

TOKEN_PATH = "/v1.0/oauth2/accessToken"
TOKEN_LIFETIME = 7200
WEBHOOK_PATH = "/robot/sendBySession"
WEBHOOK_MAX_BYTES = 20_000  # from an error text seen in the wild; not documented officially
WEBHOOK_TOO_LONG = 460101  # UNCONFIRMED: the real errcode for an oversized body is unknown
SESSION_GONE = 300001
MSG_PARAM_MAX_BYTES = 15_000
CARD_PARAM_MAX_BYTES = 1024
BATCH_MAX_USERS = 20
_SPACE = re.compile(r"^dtv1\.card//(IM_GROUP|IM_ROBOT)\.(.+)$")
_MSG_KEYS = {"sampleText": ("content",), "sampleMarkdown": ("title", "text")}


@dataclass
class Session:
    """A sessionWebhook: which chat it posts into and until when (Unix seconds)."""

    token: str
    chat: str
    expires: float


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _error(status: int, code: str, message: str) -> JSONResponse:
    body = {"code": code, "message": message, "requestid": secrets.token_hex(8)}
    return JSONResponse(body, status_code=status)


def _utf8(text: str) -> int:
    return len(text.encode("utf-8"))


class OpenApi:
    """State and routes of the fake OpenAPI; the owner serves ``routes()`` on loopback."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        robot_code: str,
        card_templates: dict[str, str],
        open_connection: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]],
        card_content_limit: int | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.robot_code = robot_code
        self.card_templates = card_templates  # template id → its streaming variable
        self.card_content_limit = card_content_limit
        self._open_connection = open_connection
        self.calls: Counter[str] = Counter()
        self.chats: dict[str, list[Shown]] = {}
        self.cards: dict[str, Card] = {}
        self.sessions: dict[str, Session] = {}
        self.webhook_calls: list[WebhookCall] = []
        self.refusals: list[tuple[str, str]] = []  # (path, error code) of refused calls
        self._tokens: dict[str, float] = {}  # token → expiry (Unix seconds)
        self._guids: set[str] = set()
        self.changed = asyncio.Condition()

    def routes(self) -> list[Route]:
        return [
            Route("/v1.0/gateway/connections/open", self._open, methods=["POST"]),
            Route(TOKEN_PATH, self._token, methods=["POST"]),
            Route("/v1.0/robot/oToMessages/batchSend", self._batch_send, methods=["POST"]),
            Route("/v1.0/robot/groupMessages/send", self._group_send, methods=["POST"]),
            Route("/v1.0/card/instances/createAndDeliver", self._create_card, methods=["POST"]),
            Route("/v1.0/card/streaming", self._stream_card, methods=["PUT"]),
            Route(WEBHOOK_PATH, self._webhook, methods=["POST"]),
        ]

    def app(self) -> Starlette:
        return Starlette(routes=self.routes())

    # -- sessions and tokens ---------------------------------------------------------------
    def new_session(self, chat: str, lifetime: float) -> Session:
        session = Session(secrets.token_hex(16), chat, time.time() + lifetime)
        self.sessions[session.token] = session
        return session

    def expire_sessions(self, chat: str | None = None) -> int:
        """End sessions now (all, or one chat's): their webhooks answer 300001 from here on."""
        ended = 0
        for session in self.sessions.values():
            if chat is None or session.chat == chat:
                session.expires = min(session.expires, time.time() - 1)
                ended += 1
        return ended

    def revoke_tokens(self) -> None:
        """Invalidate every access token: the next call gets 401 InvalidAuthentication."""
        self._tokens.clear()

    # -- recording -------------------------------------------------------------------------
    async def _show(self, shown: Shown) -> None:
        self.chats.setdefault(shown.chat, []).append(shown)
        await self._changed()

    async def _changed(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    # -- request plumbing ------------------------------------------------------------------
    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "invalidParameter", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalidParameter", "the body must be a JSON object")
        return body

    def _authorize(self, request: Request) -> None:
        token = request.headers.get("x-acs-dingtalk-access-token", "")
        expiry = self._tokens.get(token)
        if expiry is None or expiry < time.time():
            raise ApiError(401, "InvalidAuthentication", "access token is invalid or expired")

    async def _call(
        self, request: Request, handler: Callable[[dict[str, Any]], Any], *, auth: bool = True
    ) -> Response:
        self.calls[request.url.path] += 1
        try:
            if auth:
                self._authorize(request)
            body = await self._json(request)
            result = await handler(body)
        except ApiError as exc:
            self.refusals.append((request.url.path, exc.code))
            return _error(exc.status, exc.code, str(exc))
        return JSONResponse(result)

    # -- routes ----------------------------------------------------------------------------
    async def _open(self, request: Request) -> Response:
        self.calls[request.url.path] += 1
        try:
            body = await self._json(request)
        except ApiError as exc:
            return _error(exc.status, exc.code, str(exc))
        status, result = self._open_connection(body)
        return JSONResponse(result, status_code=status)

    async def _token(self, request: Request) -> Response:
        async def issue(body: dict[str, Any]) -> dict[str, Any]:
            if body.get("appKey") != self.client_id or body.get("appSecret") != (
                self.client_secret
            ):
                raise ApiError(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
            # Asking again while a token is valid returns the same one, extended.
            now = time.time()
            valid = [t for t, until in self._tokens.items() if until > now]
            token = valid[0] if valid else secrets.token_hex(16)
            self._tokens[token] = now + TOKEN_LIFETIME
            return {"accessToken": token, "expireIn": TOKEN_LIFETIME}

        return await self._call(request, issue, auth=False)

    def _robot(self, body: dict[str, Any]) -> None:
        if body.get("robotCode") != self.robot_code:
            raise ApiError(400, "invalidParameter.robotCode", "robotCode 不存在")

    def _message(self, body: dict[str, Any]) -> tuple[str, str, str]:
        """(msgtype, title, text) from msgKey and msgParam, checked as the spec documents."""
        key = body.get("msgKey")
        if key not in _MSG_KEYS:
            raise ApiError(400, "invalidParameter.msgKey", f"unsupported msgKey {key!r}")
        raw = body.get("msgParam")
        if not isinstance(raw, str):
            raise ApiError(400, "invalidParameter.msgParam", "msgParam must be a JSON string")
        if _utf8(raw) > MSG_PARAM_MAX_BYTES:
            raise ApiError(400, "invalidParameter.msgParam.tooLong", "msgParam too long")
        try:
            param = json.loads(raw)
        except ValueError:
            raise ApiError(400, "invalidParameter.msgParam", "msgParam is not JSON") from None
        fields = _MSG_KEYS[key]
        if not isinstance(param, dict) or any(not isinstance(param.get(f), str) for f in fields):
            raise ApiError(400, "invalidParameter.msgParam", f"msgParam needs {fields}")
        if key == "sampleText":
            return "text", "", param["content"]
        return "markdown", param["title"], param["text"]

    async def _batch_send(self, request: Request) -> Response:
        async def send(body: dict[str, Any]) -> dict[str, Any]:
            self._robot(body)
            users = body.get("userIds")
            if not isinstance(users, list) or not users or len(users) > BATCH_MAX_USERS:
                raise ApiError(400, "invalidParameter.userIds", "1 to 20 userIds")
            msgtype, title, text = self._message(body)
            for user in users:
                await self._show(Shown(str(user), "openapi", msgtype, text, title, _now()))
            return {
                "processQueryKey": secrets.token_hex(8),
                "invalidStaffIdList": [],
                "flowControlledStaffIdList": [],
            }

        return await self._call(request, send)

    async def _group_send(self, request: Request) -> Response:
        async def send(body: dict[str, Any]) -> dict[str, Any]:
            self._robot(body)
            group = body.get("openConversationId")
            if not isinstance(group, str) or not group:
                raise ApiError(400, "invalidParameter.openConversationId", "required")
            msgtype, title, text = self._message(body)
            await self._show(Shown(group, "openapi", msgtype, text, title, _now()))
            return {"processQueryKey": secrets.token_hex(8)}

        return await self._call(request, send)

    async def _create_card(self, request: Request) -> Response:
        async def create(body: dict[str, Any]) -> dict[str, Any]:
            template = body.get("cardTemplateId")
            track = body.get("outTrackId")
            if not isinstance(track, str) or not track:
                raise ApiError(400, "param.outTrackIdEmpty", "outTrackId is required")
            if template not in self.card_templates:
                raise ApiError(400, "param.templateUnpublished", "template not published")
            match = _SPACE.match(str(body.get("openSpaceId", "")))
            if match is None:
                raise ApiError(400, "param.openSpaceId", "openSpaceId is malformed")
            space, chat = match.groups()
            if space == "IM_GROUP":
                deliver = body.get("imGroupOpenDeliverModel")
                if not isinstance(deliver, dict) or deliver.get("robotCode") != self.robot_code:
                    raise ApiError(400, "param.robotCode", "imGroupOpenDeliverModel.robotCode")
            else:
                deliver = body.get("imRobotOpenDeliverModel")
                if not isinstance(deliver, dict) or deliver.get("spaceType") != "IM_ROBOT":
                    raise ApiError(400, "param.spaceType", "imRobotOpenDeliverModel.spaceType")
            data = body.get("cardData", {})
            params = data.get("cardParamMap", {}) if isinstance(data, dict) else None
            if not isinstance(params, dict) or any(
                not isinstance(v, str) or _utf8(v) > CARD_PARAM_MAX_BYTES for v in params.values()
            ):
                raise ApiError(400, "param.cardParamMap", "values must be strings ≤ 1 KB")
            # Reusing an outTrackId does not create a second card.
            if track not in self.cards:
                card = Card(track, chat, str(template), dict(params), _now())
                self.cards[track] = card
                await self._show(Shown(chat, "card", "card", "", "", card.created_at, card))
            return {
                "success": True,
                "result": {
                    "outTrackId": track,
                    "deliverResults": [
                        {"spaceType": space, "spaceId": chat, "success": True, "carrierId": track}
                    ],
                },
            }

        return await self._call(request, create)

    async def _stream_card(self, request: Request) -> Response:
        async def stream(body: dict[str, Any]) -> dict[str, Any]:
            for name in ("outTrackId", "guid", "key"):
                if not isinstance(body.get(name), str) or not body[name]:
                    raise ApiError(400, f"param.stream.{name}Empty", f"{name} is required")
            if not isinstance(body.get("content"), str):
                raise ApiError(400, "param.stream.contentEmpty", "content is required")
            card = self.cards.get(body["outTrackId"])
            if card is None:
                raise ApiError(400, "param.stream.outTrackId", "no such card")
            if body["key"] != self.card_templates[card.template]:
                raise ApiError(400, "param.stream.key", "card streaming key invalid")
            content: str = body["content"]
            if self.card_content_limit is not None and _utf8(content) > self.card_content_limit:
                raise ApiError(400, "param.stream.content", "content too large")
            if body["guid"] in self._guids:  # a retried call: already applied
                return {"success": True, "result": True}
            self._guids.add(body["guid"])
            full = body.get("isFull") is True
            card.content = content if full else card.content + content
            card.updates.append(
                CardUpdate(
                    at=_now(),
                    guid=body["guid"],
                    key=body["key"],
                    content=content,
                    is_full=full,
                    is_finalize=body.get("isFinalize") is True,
                    is_error=body.get("isError") is True,
                    shown=card.content,
                )
            )
            await self._changed()
            return {"success": True, "result": True}

        return await self._call(request, stream)

    async def _webhook(self, request: Request) -> Response:
        token = request.query_params.get("session", "")
        session = self.sessions.get(token)
        if session is None or session.expires < time.time():
            chat = session.chat if session is not None else ""
            self.webhook_calls.append(WebhookCall(token, chat, SESSION_GONE, _now()))
            return JSONResponse({"errcode": SESSION_GONE, "errmsg": "session 不存在"})
        raw = await request.body()
        errcode, errmsg = 0, "ok"
        try:
            body = json.loads(raw)
            msgtype = body["msgtype"]
            if msgtype == "text":
                title, text = "", body["text"]["content"]
            elif msgtype == "markdown":
                title, text = body["markdown"]["title"], body["markdown"]["text"]
            else:
                raise ValueError(f"unsupported msgtype {msgtype!r}")
            if not isinstance(text, str) or not isinstance(title, str):
                raise ValueError("title and text must be strings")
        except (ValueError, KeyError, TypeError) as exc:
            errcode, errmsg = 40035, f"缺少参数 json: {exc}"
        if errcode == 0 and len(raw) > WEBHOOK_MAX_BYTES:
            errcode, errmsg = WEBHOOK_TOO_LONG, f"message too long, exceed {WEBHOOK_MAX_BYTES}"
        self.webhook_calls.append(WebhookCall(token, session.chat, errcode, _now()))
        if errcode == 0:
            await self._show(Shown(session.chat, "webhook", msgtype, text, title, _now()))
        return JSONResponse({"errcode": errcode, "errmsg": errmsg})


def _now() -> float:
    return time.monotonic()
