"""Active sending: text to a user or a group without an inbound message (a scheduled push, say).

Channels that can speak first implement ``ActiveSender``; the app registers them in one
``Outbox``, and features send through it knowing only a ``Target``, never a platform API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from chatgate.errors import ChatgateError


@dataclass(frozen=True, slots=True)
class Target:
    """Whom to send to: a user, or a group (``group=True``), of one bot on one channel."""

    channel: str
    account: str
    id: str
    group: bool = False


class SendFailed(ChatgateError):
    """The platform refused the message or could not be reached; nothing was shown."""


class NoActiveSender(ChatgateError):
    """No channel that can send first is configured for the target's channel."""


class ActiveSender(Protocol):
    """A channel's way of speaking first. ``send`` splits long text as the channel needs."""

    @property
    def channel(self) -> str: ...

    async def send(self, target: Target, text: str) -> None:
        """Show ``text`` to ``target``; raises ``SendFailed`` when the platform refused it."""


class Outbox:
    """The active senders of one process, by channel."""

    def __init__(self) -> None:
        self._senders: dict[str, ActiveSender] = {}

    def register(self, sender: ActiveSender) -> None:
        self._senders[sender.channel] = sender

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._senders)

    async def send(self, target: Target, text: str) -> None:
        """Send through the target's channel; ``NoActiveSender`` if it cannot send first."""
        sender = self._senders.get(target.channel)
        if sender is None:
            raise NoActiveSender(f"no active sender for channel {target.channel!r}")
        await sender.send(target, text)
