"""Replies: through the message's sessionWebhook while it is valid, else through the OpenAPI.

The webhook needs no token and costs no OpenAPI call, so it is tried first — unless the
message's ``sessionWebhookExpiredTime`` has passed (with a margin), or DingTalk already
answered ``300001`` for it. On ``300001`` or any other webhook failure the same text goes
through the OpenAPI instead: ``batchSend`` to the sender's staff id in a single chat,
``groupMessages/send`` to the openConversationId in a group.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

import httpx

from chatgate.channels.dingtalk.inbound import CHANNEL, ReplyAddress
from chatgate.channels.dingtalk.openapi import OpenApi
from chatgate.core.outbox import SendFailed
from chatgate.core.plaintext import markdown_to_text
from chatgate.core.telemetry import NO_TELEMETRY, Telemetry

log = logging.getLogger(__name__)

SESSION_GONE = 300001
# A webhook this close to its expiry is not tried: the reply would race the deadline.
EXPIRY_MARGIN = 30.0
_REMEMBERED = 1024
_TITLE_CHARS = 24

Route = Literal["webhook", "openapi"]


class WebhookExpired(Exception):
    """DingTalk answered 300001: the session behind this webhook is gone."""


class WebhookFailed(Exception):
    """The webhook could not be reached or refused the message for another reason."""


def title_for(text: str) -> str:
    """The notification title of a markdown message: its first line, as plain text, short."""
    for line in markdown_to_text(text).splitlines():
        line = line.strip(" 【】•>#*")
        if line:
            return line if len(line) <= _TITLE_CHARS else line[: _TITLE_CHARS - 1] + "…"
    return "回复"


async def post_webhook(http: httpx.AsyncClient, url: str, title: str, text: str) -> None:
    """POST one markdown message to a sessionWebhook."""
    body = {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
    try:
        response = await http.post(url, json=body)
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise WebhookFailed(f"sessionWebhook: {exc!r}") from exc
    errcode = data.get("errcode") if isinstance(data, dict) else None
    if errcode == 0:
        return
    if errcode == SESSION_GONE:
        raise WebhookExpired(str(data.get("errmsg", "session gone")))
    raise WebhookFailed(f"sessionWebhook answered {response.status_code} {data}")


class Replier:
    """Sends one markdown message to where a message came from, by the cheapest route."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        openapi: OpenApi,
        *,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._http = http
        self._openapi = openapi
        self._clock = clock
        self._telemetry = telemetry
        # Webhooks DingTalk said are gone, so later parts and answers skip them.
        self._gone: OrderedDict[str, None] = OrderedDict()

    def _usable(self, address: ReplyAddress) -> bool:
        return address.webhook not in self._gone and address.webhook_usable(
            self._clock(), EXPIRY_MARGIN
        )

    def _forget(self, webhook: str) -> None:
        self._gone[webhook] = None
        while len(self._gone) > _REMEMBERED:
            self._gone.popitem(last=False)

    async def send(self, address: ReplyAddress, text: str) -> Route:
        """Show ``text`` (markdown) in the message's chat; returns the route it took."""
        title = title_for(text)
        if self._usable(address):
            try:
                await post_webhook(self._http, address.webhook, title, text)
                return "webhook"
            except WebhookExpired:
                log.info("sessionWebhook expired (300001): replying through the OpenAPI")
                self._telemetry.platform_api_error(CHANNEL, str(SESSION_GONE))
                self._forget(address.webhook)
            except WebhookFailed as exc:
                log.warning("%s: replying through the OpenAPI", exc)
                self._telemetry.platform_api_error(CHANNEL, "webhook_failed")
        await self.send_openapi(address, title, text)
        return "openapi"

    async def send_openapi(self, address: ReplyAddress, title: str, text: str) -> None:
        if address.group:
            await self._openapi.send_to_group(
                address.robot_code, address.conversation_id, title, text
            )
            return
        if not address.staff_id:
            # Outside users have no staff id, and batchSend addresses users by it.
            raise SendFailed("the sessionWebhook expired and the sender has no staff id")
        await self._openapi.send_to_users(address.robot_code, [address.staff_id], title, text)
