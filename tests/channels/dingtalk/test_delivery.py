"""Delivery follows each answer, sends its parts in order once, and resumes after a restart."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from chatgate.channels.dingtalk.cards import CardFailed
from chatgate.channels.dingtalk.delivery import ERROR_META, PENDING_KEY, DingTalkDelivery
from chatgate.channels.dingtalk.inbound import ReplyAddress
from chatgate.core.delivery import Delivery, Surface
from chatgate.core.outbox import SendFailed
from chatgate.core.tasks import TaskSupervisor
from chatgate.core.texts import Texts
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus
from chatgate.store.memory import MemoryStore

ADDRESS = ReplyAddress("1", "cid1", "u1", "robot", "https://hook", 0.0)
CONVERSATION = "dingtalk:robot:u1"
LONG = "\n\n".join(f"第{i}段。" + "内容" * 20 for i in range(6))  # ~750 bytes


@dataclass
class FakeReplier:
    sent: list[str] = field(default_factory=list)
    fail_after: int | None = None

    async def send(self, address: ReplyAddress, text: str) -> str:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise SendFailed("robot.oto.notExist")
        self.sent.append(text)
        return "webhook"


@dataclass
class FakeCards:
    upto: int | None = None  # how far the card shows; None: fail
    streamed: list[str] = field(default_factory=list)

    async def stream(self, answer: AnswerRecord, address: ReplyAddress) -> int:
        self.streamed.append(answer.id)
        if self.upto is None:
            raise CardFailed("param.templateUnpublished")
        return self.upto


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    await s.open()
    yield s
    await s.close()


def make(
    store: MemoryStore, replier: FakeReplier, cards: FakeCards | None = None
) -> tuple[DingTalkDelivery, TaskSupervisor]:
    supervisor = TaskSupervisor(8)
    texts = Texts()
    delivery = Delivery(store, Surface(max_bytes=300), texts, answer_ttl=3600)
    deliveries = DingTalkDelivery(
        store,
        supervisor,
        delivery,
        replier,  # type: ignore[arg-type]
        texts,
        cards=cards,  # type: ignore[arg-type]
        fetch_wait=1.0,
    )
    return deliveries, supervisor


async def answer(
    store: MemoryStore,
    answer_id: str,
    *,
    kind: AnswerKind = AnswerKind.LLM,
    status: AnswerStatus = AnswerStatus.QUEUED,
    text: str = "",
) -> AnswerRecord:
    record = AnswerRecord(
        answer_id,
        CONVERSATION,
        f"m-{answer_id}",
        kind,
        "q",
        f"p-{answer_id}",
        status=status,
        text=text,
        meta=dict(ADDRESS.to_meta()),
    )
    return await store.create_answer(record)


async def pending(store: MemoryStore) -> list[str]:
    return list(json.loads(await store.kv_get(PENDING_KEY) or "{}"))


async def test_an_answer_is_sent_in_parts_once_it_is_done(store: MemoryStore) -> None:
    replier = FakeReplier()
    deliveries, supervisor = make(store, replier)
    record = await answer(store, "a1")
    await deliveries.follow(record)
    assert await pending(store) == ["a1"]
    await asyncio.sleep(0.1)
    assert replier.sent == []  # nothing while the answer is being written
    await store.update_answer("a1", status=AnswerStatus.DONE, text=LONG)
    await supervisor.drain(5)
    assert len(replier.sent) >= 3
    assert "\n\n".join(replier.sent) == LONG
    final = await store.get_answer("a1")
    assert final is not None and final.fully_delivered
    assert await pending(store) == []


async def test_a_restart_resumes_after_the_last_part_sent(store: MemoryStore) -> None:
    replier = FakeReplier()
    deliveries, supervisor = make(store, replier)
    record = await answer(store, "a1", status=AnswerStatus.DONE, text=LONG)
    parts = Delivery(store, Surface(max_bytes=300), Texts(), answer_ttl=60).parts(record, 0)
    # A previous process sent the first part, recorded it, and died.
    await store.mark_delivered("a1", parts[0].upto)
    await store.kv_set(PENDING_KEY, json.dumps({"a1": time.time()}))
    assert await deliveries.resume() == 1
    await supervisor.drain(5)
    assert replier.sent == [p.text for p in parts[1:]]
    assert await pending(store) == []


async def test_a_send_the_platform_refuses_is_recorded_and_not_retried_forever(
    store: MemoryStore,
) -> None:
    replier = FakeReplier(fail_after=1)
    deliveries, supervisor = make(store, replier)
    await deliveries.follow(await answer(store, "a1", status=AnswerStatus.DONE, text=LONG))
    await supervisor.drain(5)
    record = await store.get_answer("a1")
    assert record is not None and len(replier.sent) == 1
    assert "robot.oto.notExist" in record.meta[ERROR_META]
    assert 0 < record.delivered_upto < len(LONG)
    assert await pending(store) == []


async def test_a_redelivered_message_does_not_start_a_second_delivery(store: MemoryStore) -> None:
    replier = FakeReplier()
    deliveries, supervisor = make(store, replier)
    record = await answer(store, "a1")
    await deliveries.follow(record)
    await deliveries.ensure(record)
    await deliveries.ensure(record)
    assert deliveries.running == 1
    await store.update_answer("a1", status=AnswerStatus.DONE, text="短回答")
    await supervisor.drain(5)
    assert replier.sent == ["短回答"]
    done = await store.get_answer("a1")
    assert done is not None
    await deliveries.ensure(done)  # delivered already: nothing to do
    assert deliveries.running == 0


async def test_a_fixed_reply_goes_out_at_once(store: MemoryStore) -> None:
    replier = FakeReplier()
    deliveries, supervisor = make(store, replier)
    record = await answer(store, "r1", kind=AnswerKind.REPLY, status=AnswerStatus.DONE, text="帮助")
    await deliveries.follow(record)
    await supervisor.drain(5)
    assert replier.sent == ["帮助"]


async def test_a_card_shows_the_answer_and_the_rest_follows_as_messages(
    store: MemoryStore,
) -> None:
    replier = FakeReplier()
    cards = FakeCards(upto=LONG.index("第3段"))
    deliveries, supervisor = make(store, replier, cards)
    await deliveries.follow(await answer(store, "a1", status=AnswerStatus.DONE, text=LONG))
    await supervisor.drain(5)
    assert cards.streamed == ["a1"]
    assert replier.sent[0].startswith("第3段") and LONG.endswith(replier.sent[-1])


async def test_a_failed_card_falls_back_to_messages(store: MemoryStore) -> None:
    replier = FakeReplier()
    deliveries, supervisor = make(store, replier, FakeCards(upto=None))
    await deliveries.follow(await answer(store, "a1", status=AnswerStatus.DONE, text="全部内容"))
    await supervisor.drain(5)
    assert replier.sent == ["全部内容"]


async def test_1_with_nothing_pending_gets_the_nothing_pending_text(store: MemoryStore) -> None:
    replier = FakeReplier()
    deliveries, supervisor = make(store, replier)
    await deliveries.follow(await answer(store, "f1", kind=AnswerKind.FETCH))
    await supervisor.drain(5)
    assert replier.sent == [Texts().nothing_pending]
