"""Map the fields of a WeChat push (a user message or an event) onto the core's ``Inbound``.

- ``account`` is ToUserName (our ``gh_`` id), ``user`` is FromUserName (the OpenID),
  ``created_at`` is CreateTime (seconds).
- ``kind``: text, image, voice, video (and shortvideo), location and link map to their
  ``Kind``; ``event`` to ``Kind.EVENT``; anything else (miniprogrampage, …) to ``Kind.OTHER``.
- ``text`` is Content for text and Recognition for voice (often empty: WeChat's ASR is
  being retired); empty otherwise.
- ``event`` is Event exactly as sent (``subscribe``, ``SCAN``, ``CLICK``…); ``event_key``
  is EventKey, without the ``qrscene_`` prefix WeChat adds when a new follower came from a
  parametric QR code, and ``None`` when absent or empty.
- ``media_url`` is PicUrl, ``media_id`` is MediaId.
- ``extra`` keeps, in document order, every field no attribute carries verbatim: MsgType
  (``shortvideo`` stays visible), MsgId, the original EventKey, Recognition, Location_X,
  Url, Title, flattened nested fields… (not ToUserName, FromUserName, CreateTime, Event,
  PicUrl, MediaId, nor Content of a text message).
- ``dedup_key``: ``msg:<MsgId>`` for messages; ``evt:<MsgID>`` for events that carry one
  (template and mass-send results); otherwise ``evt:<FromUserName>:<CreateTime>:<Event>:
  <EventKey>``, since WeChat's own event key (FromUserName + CreateTime) collides when two
  events arrive within one second.
"""

from __future__ import annotations

from collections.abc import Mapping

from chatgate.core.messages import Inbound, Kind
from chatgate.errors import BadRequest

CHANNEL = "wechat_mp"

_KINDS: Mapping[str, Kind] = {
    "text": Kind.TEXT,
    "image": Kind.IMAGE,
    "voice": Kind.VOICE,
    "video": Kind.VIDEO,
    "shortvideo": Kind.VIDEO,
    "location": Kind.LOCATION,
    "link": Kind.LINK,
    "event": Kind.EVENT,
}
_QR_SCENE_PREFIX = "qrscene_"
_CARRIED = frozenset({"ToUserName", "FromUserName", "CreateTime", "Event", "PicUrl", "MediaId"})
_CARRIED_TEXT = _CARRIED | {"Content"}


def to_inbound(fields: Mapping[str, str]) -> Inbound:
    """The ``Inbound`` for a parsed push; ``BadRequest`` if a required field is missing.

    Required: ToUserName, FromUserName, MsgType, CreateTime (an integer), MsgId on a
    message, Event on an event.
    """
    account = _required(fields, "ToUserName")
    user = _required(fields, "FromUserName")
    kind = _KINDS.get(_required(fields, "MsgType"), Kind.OTHER)
    create_time = _required(fields, "CreateTime")
    if not (create_time.isascii() and create_time.isdigit()):
        raise BadRequest("CreateTime is not an integer")

    event: str | None = None
    event_key: str | None = None
    if kind is Kind.EVENT:
        event = _required(fields, "Event")
        raw_key = fields.get("EventKey", "")
        if event == "subscribe":
            event_key = raw_key.removeprefix(_QR_SCENE_PREFIX) or None
        else:
            event_key = raw_key or None
        job_id = fields.get("MsgID")
        dedup_key = f"evt:{job_id}" if job_id else f"evt:{user}:{create_time}:{event}:{raw_key}"
    else:
        dedup_key = "msg:" + _required(fields, "MsgId")

    if kind is Kind.TEXT:
        text, carried = fields.get("Content", ""), _CARRIED_TEXT
    elif kind is Kind.VOICE:
        text, carried = fields.get("Recognition", ""), _CARRIED
    else:
        text, carried = "", _CARRIED

    return Inbound(
        channel=CHANNEL,
        account=account,
        user=user,
        dedup_key=dedup_key,
        kind=kind,
        text=text,
        event=event,
        event_key=event_key,
        media_url=fields.get("PicUrl"),
        media_id=fields.get("MediaId"),
        created_at=float(create_time),
        extra=tuple((name, value) for name, value in fields.items() if name not in carried),
    )


def _required(fields: Mapping[str, str], name: str) -> str:
    value = fields.get(name)
    if not value:
        raise BadRequest(f"WeChat push has no {name}")
    return value
