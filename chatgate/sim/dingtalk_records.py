"""What the fake DingTalk saw: messages shown in each chat, AI cards with their update history."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Via = Literal["webhook", "openapi", "card"]


@dataclass(frozen=True)
class CardUpdate:
    """One ``PUT /v1.0/card/streaming`` call as received; ``at`` is ``time.monotonic()``."""

    at: float
    guid: str
    key: str
    content: str  # as sent
    is_full: bool
    is_finalize: bool
    is_error: bool
    shown: str  # the card's text after this update


@dataclass
class Card:
    """An AI card delivered to a chat, and every streaming update it received."""

    out_track_id: str
    chat: str
    template: str
    params: dict[str, str]
    created_at: float
    updates: list[CardUpdate] = field(default_factory=list)
    content: str = ""

    @property
    def state(self) -> Literal["processing", "inputting", "finished", "failed"]:
        """The card's status as a user sees it (处理中 → 输入中 → 完成 / 失败)."""
        if any(u.is_error for u in self.updates):
            return "failed"
        if any(u.is_finalize for u in self.updates):
            return "finished"
        return "inputting" if self.updates else "processing"

    @property
    def finished(self) -> bool:
        return self.state in ("finished", "failed")


@dataclass(frozen=True)
class Shown:
    """One message in a chat's window. For a card, ``text`` is its content at that moment."""

    chat: str
    via: Via
    msgtype: str  # text | markdown | card
    text: str
    title: str
    at: float
    card: Card | None = None

    @property
    def current(self) -> str:
        """What the user sees now: a card keeps changing after it was first shown."""
        return self.card.content if self.card is not None else self.text


@dataclass(frozen=True)
class WebhookCall:
    """A POST to a sessionWebhook, accepted or refused (``errcode``)."""

    session: str
    chat: str
    errcode: int
    at: float


@dataclass(frozen=True)
class Ack:
    """An ack frame from the client; ``late`` when it came after the sim's ack deadline."""

    message_id: str
    code: int
    at: float
    late: bool
    data: str


@dataclass(frozen=True)
class CallbackPost:
    """One HTTP-mode callback POST to the gateway: its status, or why there was none."""

    msg_id: str
    status: int | None
    body: str
    took: float
    error: str = ""
