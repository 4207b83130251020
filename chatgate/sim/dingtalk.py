"""A fake DingTalk: users and groups talking to a robot, over Stream mode or HTTP callbacks.

``async with DingTalkSim().serve() as sim:`` runs on loopback the OpenAPI and sessionWebhooks
(``sim.api_base``, the gateway's ``CHATGATE_DINGTALK_API_BASE``) and the Stream gateway. Users
speak with ``send_text``: in Stream mode the message is pushed to a connected client (and
pushed again if its ack is late); with ``callback_url`` set it is POSTed there, signed, as in
HTTP mode. What each chat then shows is read with ``shown``/``texts``/``cards`` and awaited
with ``wait_shown``/``wait_card``. A message carries what DingTalk's does: ``msgId``,
``createAt``, a ``sessionWebhook`` valid ``webhook_ttl`` seconds (90 min by default, as in
every official sample), the sender's staff id, and for groups the openConversationId with
the @-mention stripped from the text (a leading space left, as DingTalk leaves it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from chatgate.sim.dingtalk_api import TOKEN_PATH, WEBHOOK_PATH, OpenApi
from chatgate.sim.dingtalk_gateway import BOT_TOPIC, Push, StreamGateway
from chatgate.sim.dingtalk_records import (
    Ack,
    CallbackPost,
    Card,
    CardUpdate,
    Shown,
    WebhookCall,
)
from chatgate.sim.dingtalk_sign import callback_sign
from chatgate.sim.server import LoopbackServer

__all__ = [
    "Ack",
    "CallbackPost",
    "Card",
    "CardUpdate",
    "DingTalkSim",
    "SentMessage",
    "Shown",
    "WebhookCall",
    "callback_sign",
]

DEFAULT_CLIENT_ID = "dingsimclient0001"
DEFAULT_CLIENT_SECRET = "sim-client-secret-0123456789"
DEFAULT_TEMPLATE = "sim-ai-card.schema"
WEBHOOK_TTL = 5400.0


@dataclass
class SentMessage:
    """A message a user sent, and how DingTalk handed it to the gateway."""

    msg_id: str
    chat: str
    data: dict[str, Any]
    delivered: bool  # false for a group message that does not @ the robot
    pushes: list[Push] = field(default_factory=list)  # Stream mode
    posts: list[CallbackPost] = field(default_factory=list)  # HTTP mode

    @property
    def session_webhook(self) -> str:
        return str(self.data.get("sessionWebhook", ""))


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:20]


class DingTalkSim:
    """One robot of one organisation, its users and groups."""

    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        robot_code: str | None = None,
        corp_id: str = "dingsimcorp0001",
        bot_name: str = "AI助手",
        card_templates: dict[str, str] | None = None,
        card_content_limit: int | None = None,
        webhook_ttl: float = WEBHOOK_TTL,
        ack_timeout: float = 10.0,
        max_redeliveries: int = 3,
        callback_url: str | None = None,
        http_timeout: float = 10.0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.robot_code = robot_code or client_id
        self.corp_id = corp_id
        self.bot_name = bot_name
        self.webhook_ttl = webhook_ttl
        self.callback_url = callback_url
        self.http_timeout = http_timeout
        self.bot_user_id = "$:LWCP_v1:$" + _digest("bot:" + client_id)
        self.gateway = StreamGateway(
            client_id=client_id,
            client_secret=client_secret,
            ack_timeout=ack_timeout,
            max_redeliveries=max_redeliveries,
        )
        self.api = OpenApi(
            client_id=client_id,
            client_secret=client_secret,
            robot_code=self.robot_code,
            card_templates=card_templates or {DEFAULT_TEMPLATE: "content"},
            card_content_limit=card_content_limit,
            open_connection=self.gateway.open_connection,
        )
        self.sent: list[SentMessage] = []
        self._server: LoopbackServer | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[DingTalkSim]:
        await self.gateway.start()
        try:
            async with LoopbackServer(self.api.app()) as server:
                self._server = server
                try:
                    yield self
                finally:
                    self._server = None
        finally:
            await self.gateway.aclose()

    @property
    def api_base(self) -> str:
        """The OpenAPI base URL, for ``CHATGATE_DINGTALK_API_BASE``."""
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return self._server.url

    @property
    def mode(self) -> str:
        return "http" if self.callback_url else "stream"

    # -- users speak -----------------------------------------------------------------------
    def message(
        self,
        user: str,
        text: str,
        *,
        group: str | None = None,
        group_title: str = "测试群",
        nick: str | None = None,
        staff: bool = True,
        mention_text: bool = False,
        age: float = 0.0,
        webhook_ttl: float | None = None,
    ) -> dict[str, Any]:
        """The callback ``data`` DingTalk would send for this message (not sent)."""
        chat = group or user
        now_ms = int((time.time() - age) * 1000)
        ttl = self.webhook_ttl if webhook_ttl is None else webhook_ttl
        session = self.api.new_session(chat, ttl - age)
        data: dict[str, Any] = {
            "conversationId": group or "cid" + _digest("single:" + user),
            "chatbotCorpId": self.corp_id,
            "chatbotUserId": self.bot_user_id,
            "msgId": "msg" + secrets.token_urlsafe(18),
            "senderNick": nick or f"用户{user}",
            "isAdmin": False,
            "senderStaffId": user if staff else "",
            "sessionWebhookExpiredTime": now_ms + int(ttl * 1000),
            "createAt": now_ms,
            "senderCorpId": self.corp_id,
            "conversationType": "2" if group else "1",
            "senderId": "$:LWCP_v1:$" + _digest("user:" + user),
            "sessionWebhook": f"{self.api_base}{WEBHOOK_PATH}?session={session.token}",
            "robotCode": self.robot_code,
            "msgtype": "text",
            "text": {"content": text},
        }
        if group:
            # DingTalk removes the robot's @name and leaves the space after it.
            content = f"@{self.bot_name} {text}" if mention_text else f" {text}"
            data.update(
                conversationTitle=group_title,
                isInAtList=True,
                atUsers=[{"dingtalkId": self.bot_user_id}],
                text={"content": content},
            )
        return data

    async def send_text(
        self,
        user: str,
        text: str,
        *,
        group: str | None = None,
        at_bot: bool = True,
        redeliver: int = 0,
        wait: float | None = 15.0,
        **details: Any,
    ) -> SentMessage:
        """``user`` says ``text`` to the robot, in a single chat or in ``group``.

        A group message reaches the robot only when it @-mentions it (``at_bot``).
        ``redeliver`` hands the same message to the gateway that many more times, as DingTalk
        does after slow acks. Returns once the first delivery was acked, in time or late
        (Stream), or answered (HTTP), waiting at most ``wait`` seconds (``None``: do not wait).
        """
        data = self.message(user, text, group=group, **details)
        sent = SentMessage(data["msgId"], group or user, data, delivered=not group or at_bot)
        self.sent.append(sent)
        if not sent.delivered:
            return sent
        if self.callback_url:
            for _ in range(1 + redeliver):
                sent.posts.append(await self.post_callback(data))
            return sent
        sent.pushes = [self.gateway.push(data, BOT_TOPIC) for _ in range(1 + redeliver)]
        if wait is not None:
            async with asyncio.timeout(wait):
                await sent.pushes[0].answered.wait()
        return sent

    def sign_headers(self, *, skew: float = 0.0, secret: str | None = None) -> dict[str, str]:
        timestamp = str(int((time.time() + skew) * 1000))
        sign = callback_sign(timestamp, self.client_secret if secret is None else secret)
        return {"timestamp": timestamp, "sign": sign}

    async def post_callback(
        self, data: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> CallbackPost:
        """POST one callback to ``callback_url`` as DingTalk's HTTP mode does."""
        if not self.callback_url:
            raise RuntimeError("no callback_url: the simulator is in Stream mode")
        body = json.dumps(data, ensure_ascii=False).encode()
        sent_headers = {"Content-Type": "application/json; charset=utf-8"}
        sent_headers.update(self.sign_headers() if headers is None else headers)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with httpx.AsyncClient(timeout=self.http_timeout) as client:
                response = await client.post(self.callback_url, content=body, headers=sent_headers)
        except httpx.HTTPError as exc:
            took = loop.time() - started
            return CallbackPost(str(data.get("msgId")), None, "", took, type(exc).__name__)
        took = loop.time() - started
        return CallbackPost(str(data.get("msgId")), response.status_code, response.text, took)

    # -- what chats show -------------------------------------------------------------------
    def shown(self, chat: str) -> list[Shown]:
        return list(self.api.chats.get(chat, []))

    def texts(self, chat: str) -> list[str]:
        """What the chat shows now, oldest first (a card's current content)."""
        return [s.current for s in self.shown(chat)]

    def cards(self, chat: str) -> list[Card]:
        return [s.card for s in self.shown(chat) if s.card is not None]

    def expire_sessions(self, chat: str | None = None) -> int:
        return self.api.expire_sessions(chat)

    def revoke_tokens(self) -> None:
        self.api.revoke_tokens()

    @property
    def webhook_calls(self) -> list[WebhookCall]:
        return list(self.api.webhook_calls)

    def api_calls(self, *, token: bool = False) -> Counter[str]:
        """OpenAPI calls by path (the token call, exempt from the quota, only if asked)."""
        counts = Counter(self.api.calls)
        if not token:
            counts.pop(TOKEN_PATH, None)
        counts.pop("/v1.0/gateway/connections/open", None)
        return counts

    async def wait_until(self, ready: Callable[[], bool], within: float = 30.0) -> None:
        async with asyncio.timeout(within), self.api.changed:
            await self.api.changed.wait_for(ready)

    async def wait_shown(self, chat: str, count: int = 1, within: float = 30.0) -> list[Shown]:
        """Until ``chat`` shows at least ``count`` messages; returns them all."""
        await self.wait_until(lambda: len(self.api.chats.get(chat, [])) >= count, within)
        return self.shown(chat)

    async def wait_card(self, chat: str, count: int = 1, within: float = 60.0) -> Card:
        """Until ``chat`` has ``count`` cards and the last is finished (or failed)."""

        def done() -> bool:
            cards = self.cards(chat)
            return len(cards) >= count and cards[count - 1].finished

        await self.wait_until(done, within)
        return self.cards(chat)[count - 1]
