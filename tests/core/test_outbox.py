"""The outbox sends through the active sender registered for the target's channel."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from chatgate.core.outbox import NoActiveSender, Outbox, Target


@dataclass
class RecordingSender:
    channel: str
    sent: list[tuple[Target, str]] = field(default_factory=list)

    async def send(self, target: Target, text: str) -> None:
        self.sent.append((target, text))


async def test_send_goes_to_the_sender_of_the_targets_channel() -> None:
    outbox = Outbox()
    dingtalk, other = RecordingSender("dingtalk"), RecordingSender("other")
    outbox.register(dingtalk)
    outbox.register(other)
    target = Target("dingtalk", "robot", "cid-1", group=True)
    await outbox.send(target, "早上好")
    assert dingtalk.sent == [(target, "早上好")]
    assert other.sent == []
    assert outbox.channels == {"dingtalk", "other"}


async def test_a_channel_without_an_active_sender_is_refused_clearly() -> None:
    outbox = Outbox()
    with pytest.raises(NoActiveSender, match="wechat_mp"):
        await outbox.send(Target("wechat_mp", "gh", "openid"), "hi")
