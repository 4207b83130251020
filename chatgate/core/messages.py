"""The values the core speaks: ``Inbound`` from a channel, ``Outbound`` back to it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    """What a user sent. Channels map their own types onto these."""

    TEXT = "text"
    IMAGE = "image"
    VOICE = "voice"
    VIDEO = "video"
    LOCATION = "location"
    LINK = "link"
    EVENT = "event"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Who is talking to which bot: one multi-turn context per key."""

    channel: str
    account: str
    user: str

    def __str__(self) -> str:
        return f"{self.channel}:{self.account}:{self.user}"

    @classmethod
    def parse(cls, value: str) -> ConversationKey:
        channel, account, user = value.split(":", 2)
        return cls(channel, account, user)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message or event from a user, free of any wire format.

    ``dedup_key`` identifies the message across the platform's retries (WeChat's MsgId, or
    FromUserName+CreateTime+Event for events); every try of one message carries the same key.
    """

    channel: str
    account: str
    user: str
    dedup_key: str
    kind: Kind
    text: str = ""
    event: str | None = None
    event_key: str | None = None
    media_url: str | None = None
    media_id: str | None = None
    created_at: float = field(default_factory=time.time)
    extra: tuple[tuple[str, str], ...] = ()
    # Where a later reply to this message goes (a DingTalk sessionWebhook and its expiry, say):
    # the dispatcher copies these into the answer's meta, so any process can deliver it.
    reply_to: tuple[tuple[str, str], ...] = ()
    # ``conversation``, made on first use: it is asked for several times per message.
    _conversation: ConversationKey | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def conversation(self) -> ConversationKey:
        key = self._conversation
        if key is None:
            key = ConversationKey(self.channel, self.account, self.user)
            object.__setattr__(self, "_conversation", key)  # a cache: frozen all the same
        return key

    def get(self, name: str, default: str | None = None) -> str | None:
        """A channel-specific field kept in ``extra`` (e.g. WeChat's ``Recognition``)."""
        for key, value in self.extra:
            if key == name:
                return value
        return default


@dataclass(frozen=True, slots=True)
class Outbound:
    """Text to show the user, and the answer it belongs to (if any)."""

    text: str
    answer_id: str | None = None
