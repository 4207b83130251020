"""Map a DingTalk robot callback (Stream ``data`` or HTTP body, the same JSON) onto ``Inbound``.

- ``account`` is the robot's code (``robotCode``; the configured one for custom robots).
- ``user`` is the sender's staff id (``senderId`` for outside users, who have none) in a
  single chat; in a group it is ``<openConversationId>/<sender>``, so each member of a group
  has a context of their own with the robot.
- ``dedup_key`` is ``msgId``: DingTalk redelivers a message after a slow ack under the same
  ``msgId`` (with a new frame id), so the store's claim on it makes one answer per message.
- ``kind``/``text``: text and richText (its text pieces joined) are text; in groups the
  @-mention is stripped (DingTalk leaves a leading space, some clients the ``@name`` too).
  audio is voice with DingTalk's own ``recognition`` as text; picture is an image with its
  ``downloadCode`` as ``media_id``; video is video; anything else is other.
- ``reply_to`` is the ``ReplyAddress``: everything needed to answer later, in any process —
  the sessionWebhook and its expiry, and for the OpenAPI the conversation, the sender's staff
  id and the robot code.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chatgate.core.messages import Inbound, Kind
from chatgate.errors import BadRequest

CHANNEL = "dingtalk"
SINGLE, GROUP = "1", "2"

_PREFIX = "dingtalk."
_LEADING_MENTIONS = re.compile(r"^(?:\s*@\S+(?:\s+|$))+")


@dataclass(frozen=True, slots=True)
class ReplyAddress:
    """Where the answer to one message goes, kept in its answer's meta."""

    conversation_type: str  # "1" single chat, "2" group
    conversation_id: str  # the group's openConversationId (also set for single chats)
    staff_id: str  # the sender's userId; empty for people outside the organisation
    robot_code: str
    webhook: str = ""
    webhook_expires: float = 0.0  # Unix seconds; 0 when DingTalk did not say

    @property
    def group(self) -> bool:
        return self.conversation_type == GROUP

    def webhook_usable(self, now: float, margin: float) -> bool:
        """Whether the sessionWebhook should still work ``margin`` seconds from ``now``."""
        if not self.webhook:
            return False
        return self.webhook_expires == 0.0 or now + margin < self.webhook_expires

    def to_meta(self) -> tuple[tuple[str, str], ...]:
        return (
            (_PREFIX + "conversation_type", self.conversation_type),
            (_PREFIX + "conversation_id", self.conversation_id),
            (_PREFIX + "staff_id", self.staff_id),
            (_PREFIX + "robot_code", self.robot_code),
            (_PREFIX + "webhook", self.webhook),
            (_PREFIX + "webhook_expires", repr(self.webhook_expires)),
        )

    @classmethod
    def from_meta(cls, meta: Mapping[str, str]) -> ReplyAddress | None:
        """The address kept in an answer's meta, or ``None`` if it is not a DingTalk answer."""
        kind = meta.get(_PREFIX + "conversation_type")
        if kind not in (SINGLE, GROUP):
            return None
        try:
            expires = float(meta.get(_PREFIX + "webhook_expires", "0") or 0)
        except ValueError:
            expires = 0.0
        return cls(
            conversation_type=kind,
            conversation_id=meta.get(_PREFIX + "conversation_id", ""),
            staff_id=meta.get(_PREFIX + "staff_id", ""),
            robot_code=meta.get(_PREFIX + "robot_code", ""),
            webhook=meta.get(_PREFIX + "webhook", ""),
            webhook_expires=expires,
        )


def strip_mention(text: str) -> str:
    """The question without the @-mentions a group message may start with."""
    return _LEADING_MENTIONS.sub("", text).strip()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _str_field(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def _millis(data: Mapping[str, Any], name: str) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0.0
    try:
        return float(value) / 1000
    except ValueError:
        return 0.0


def _content(data: Mapping[str, Any]) -> Mapping[str, Any]:
    content = data.get("content")
    return content if isinstance(content, Mapping) else {}


def _kind_and_text(data: Mapping[str, Any]) -> tuple[Kind, str, str | None]:
    """(kind, text, media id) of the message."""
    msgtype = data.get("msgtype")
    content = _content(data)
    if msgtype == "text":
        body = data.get("text")
        return Kind.TEXT, _text(body.get("content") if isinstance(body, Mapping) else ""), None
    if msgtype == "richText":
        pieces = content.get("richText")
        items = [p for p in pieces if isinstance(p, Mapping)] if isinstance(pieces, list) else []
        text = "".join(_text(p.get("text")) for p in items)
        if text.strip():
            return Kind.TEXT, text, None
        codes = [_text(p.get("downloadCode")) for p in items if p.get("downloadCode")]
        return Kind.IMAGE, "", codes[0] if codes else None
    if msgtype == "audio":
        return Kind.VOICE, _text(content.get("recognition")), _text(content.get("downloadCode"))
    if msgtype == "picture":
        code = _text(content.get("downloadCode")) or _text(content.get("pictureDownloadCode"))
        return Kind.IMAGE, "", code or None
    if msgtype == "video":
        return Kind.VIDEO, "", _text(content.get("downloadCode")) or None
    return Kind.OTHER, "", None


def to_inbound(data: Mapping[str, Any], *, robot_code: str) -> Inbound:
    """The ``Inbound`` of one robot callback; ``BadRequest`` if it is not one."""
    msg_id = _str_field(data, "msgId")
    if not msg_id:
        raise BadRequest("callback without msgId")
    conversation_type = _str_field(data, "conversationType")
    if conversation_type not in (SINGLE, GROUP):
        raise BadRequest(f"unknown conversationType {conversation_type!r}")
    conversation_id = _str_field(data, "conversationId")
    staff_id = _str_field(data, "senderStaffId")
    sender = staff_id or _str_field(data, "senderId")
    if not sender:
        raise BadRequest("callback without senderStaffId or senderId")
    group = conversation_type == GROUP
    if group and not conversation_id:
        raise BadRequest("group callback without conversationId")
    kind, text, media_id = _kind_and_text(data)
    if group and kind is Kind.TEXT:
        text = strip_mention(text)
    elif kind in (Kind.TEXT, Kind.VOICE):
        text = text.strip()
    account = _str_field(data, "robotCode") or robot_code
    address = ReplyAddress(
        conversation_type=conversation_type,
        conversation_id=conversation_id,
        staff_id=staff_id,
        robot_code=account,
        webhook=_str_field(data, "sessionWebhook"),
        webhook_expires=_millis(data, "sessionWebhookExpiredTime"),
    )
    extra = [("msgtype", _str_field(data, "msgtype"))]
    for name in ("senderNick", "conversationTitle", "senderId"):
        if value := _str_field(data, name):
            extra.append((name, value))
    created = _millis(data, "createAt")
    return Inbound(
        channel=CHANNEL,
        account=account,
        user=f"{conversation_id}/{sender}" if group else sender,
        dedup_key=msg_id,
        kind=kind,
        text=text,
        media_id=media_id,
        created_at=created or time.time(),
        extra=tuple(extra),
        reply_to=address.to_meta(),
    )


def is_stale(inbound: Inbound, *, now: float, max_age: float) -> bool:
    """Whether the message is backlog older than ``max_age`` seconds (0: nothing is stale)."""
    return max_age > 0 and now - inbound.created_at > max_age
