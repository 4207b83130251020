"""Speaking first: the DingTalk ``ActiveSender``, through the OpenAPI (no message to reply to)."""

from __future__ import annotations

from chatgate.channels.dingtalk.inbound import CHANNEL
from chatgate.channels.dingtalk.openapi import OpenApi
from chatgate.channels.dingtalk.webhook import title_for
from chatgate.core.delivery import Surface, cut_parts
from chatgate.core.outbox import SendFailed, Target


class DingTalkActiveSender:
    """Markdown to a user's single chat (by staff id) or to a group (by openConversationId).

    ``target.account`` is the robot code. Long text is cut into several messages, as replies
    are; each costs one OpenAPI call.
    """

    channel = CHANNEL

    def __init__(self, openapi: OpenApi, surface: Surface) -> None:
        self._openapi = openapi
        self._surface = surface

    async def send(self, target: Target, text: str) -> None:
        if target.channel != CHANNEL:
            raise SendFailed(f"not a dingtalk target: {target.channel}")
        for part in cut_parts(text, self._surface):
            title = title_for(part.text)
            if target.group:
                await self._openapi.send_to_group(target.account, target.id, title, part.text)
            else:
                await self._openapi.send_to_users(target.account, [target.id], title, part.text)
