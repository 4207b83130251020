"""The receiver: first deliveries are followed, copies join them, backlog and junk are refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from chatgate.channels.dingtalk.receiver import Outcome, Receiver
from chatgate.errors import BadRequest
from chatgate.store.base import AnswerRecord
from chatgate.store.memory import MemoryStore
from tests.core.conftest import Core, ScriptedProvider, build_core

NOW = 1_700_000_000.0


@dataclass
class Deliveries:
    followed: list[str] = field(default_factory=list)
    ensured: list[str] = field(default_factory=list)

    async def follow(self, answer: AnswerRecord) -> None:
        self.followed.append(answer.id)

    async def ensure(self, answer: AnswerRecord) -> None:
        self.ensured.append(answer.id)


def message(msg_id: str = "m1", age: float = 0.0) -> dict[str, Any]:
    return {
        "msgId": msg_id,
        "conversationType": "1",
        "conversationId": "cid1",
        "senderStaffId": "u1",
        "createAt": int((NOW - age) * 1000),
        "msgtype": "text",
        "text": {"content": "你好"},
    }


@pytest.fixture
async def core() -> AsyncIterator[Core]:
    store = MemoryStore()
    await store.open()
    c = build_core(store, ScriptedProvider())
    yield c
    await c.supervisor.drain(1.0)


@pytest.fixture
def deliveries() -> Deliveries:
    return Deliveries()


@pytest.fixture
def receiver(core: Core, deliveries: Deliveries) -> Receiver:
    return Receiver(
        core.dispatcher,
        deliveries,  # type: ignore[arg-type]
        robot_code="robot",
        max_age=300,
        clock=lambda: NOW,
    )


async def test_the_first_delivery_is_followed_and_copies_join_it(
    receiver: Receiver, deliveries: Deliveries, core: Core
) -> None:
    assert await receiver.receive(message()) is Outcome.ACCEPTED
    assert await receiver.receive(message()) is Outcome.DUPLICATE
    assert await receiver.receive(message()) is Outcome.DUPLICATE
    assert len(deliveries.followed) == 1
    assert deliveries.ensured == deliveries.followed * 2
    await core.supervisor.drain(5)
    assert core.provider.questions() == ["你好"]


async def test_backlog_is_ignored_without_claiming_it(
    receiver: Receiver, deliveries: Deliveries, core: Core
) -> None:
    assert await receiver.receive(message(age=301)) is Outcome.STALE
    assert deliveries.followed == [] and core.provider.calls == []
    assert await core.store.conversation_answers("dingtalk:robot:u1") == []


@pytest.mark.parametrize("data", [[1, 2], "text", {"msgtype": "text"}])
async def test_what_is_not_a_robot_message_is_a_bad_request(receiver: Receiver, data: Any) -> None:
    with pytest.raises(BadRequest):
        await receiver.receive(data)
