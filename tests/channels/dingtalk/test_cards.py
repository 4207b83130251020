"""AI cards: created when the job starts, whole-text updates at most once per interval."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from chatgate.channels.dingtalk.cards import CardFailed, CardStreamer, out_track_id
from chatgate.channels.dingtalk.inbound import ReplyAddress
from chatgate.channels.dingtalk.openapi import DingTalkApiError
from chatgate.core.splitting import utf8_len
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus
from chatgate.store.memory import MemoryStore

ADDRESS = ReplyAddress("1", "cid1", "u1", "robot")
INTERVAL = 0.3


@dataclass
class Update:
    at: float
    content: str
    finalize: bool
    error: bool


@dataclass
class FakeCards:
    created: list[tuple[str, str, float]] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    fail_create: bool = False

    async def create_card(
        self, template: str, out_track_id: str, address: ReplyAddress, params: dict[str, str]
    ) -> None:
        if self.fail_create:
            raise DingTalkApiError("no permission", status=403, code="Forbidden")
        self.created.append((template, out_track_id, time.monotonic()))

    async def stream_card(
        self,
        out_track_id: str,
        key: str,
        content: str,
        *,
        finalize: bool = False,
        error: bool = False,
    ) -> None:
        await asyncio.sleep(0.01)  # a call takes a little while
        self.updates.append(Update(time.monotonic(), content, finalize, error))


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    await s.open()
    yield s
    await s.close()


async def new_answer(store: MemoryStore) -> AnswerRecord:
    record = AnswerRecord("a1", "dingtalk:robot:u1", "m1", AnswerKind.LLM, "q", "page")
    return await store.create_answer(record)


def streamer(store: MemoryStore, cards: FakeCards, **options: object) -> CardStreamer:
    return CardStreamer(
        cards,  # type: ignore[arg-type]
        store,
        template="tpl",
        key="content",
        interval=INTERVAL,
        **options,  # type: ignore[arg-type]
    )


async def test_the_card_appears_when_the_job_starts_and_ends_finalized(
    store: MemoryStore,
) -> None:
    cards = FakeCards()
    answer = await new_answer(store)
    task = asyncio.create_task(streamer(store, cards).stream(answer, ADDRESS))
    await asyncio.sleep(0.2)
    assert cards.created == []  # still queued behind earlier answers
    await store.update_answer(answer.id, status=AnswerStatus.RUNNING, text="")
    await asyncio.sleep(0.05)
    assert [c[:2] for c in cards.created] == [("tpl", out_track_id("a1"))]
    await store.append_answer_text(answer.id, "你好")
    await store.update_answer(answer.id, status=AnswerStatus.DONE, text="你好，世界")
    assert await task == len("你好，世界")
    assert cards.updates[-1].content == "你好，世界" and cards.updates[-1].finalize
    assert not any(u.finalize for u in cards.updates[:-1])


async def test_fast_text_is_coalesced_to_one_update_per_interval(store: MemoryStore) -> None:
    cards = FakeCards()
    answer = await new_answer(store)
    await store.update_answer(answer.id, status=AnswerStatus.RUNNING, text="")
    started = time.monotonic()
    task = asyncio.create_task(streamer(store, cards).stream(answer, ADDRESS))
    text = ""
    for i in range(60):  # a chunk every 25 ms for 1.5 s
        text += f"第{i}句。"
        await store.append_answer_text(answer.id, f"第{i}句。")
        await asyncio.sleep(0.025)
    await store.update_answer(answer.id, status=AnswerStatus.DONE, text=text)
    await task
    updates = cards.updates
    # However long the 60 chunks took on this machine, one update per interval at most.
    assert 3 <= len(updates) <= (time.monotonic() - started) / INTERVAL + 1
    assert all(b.at - a.at >= INTERVAL for a, b in itertools.pairwise(updates))
    assert all(b.content.startswith(a.content) for a, b in itertools.pairwise(updates))
    assert updates[-1].content == text and updates[-1].finalize


async def test_text_written_just_before_a_pause_shows_within_the_interval(
    store: MemoryStore,
) -> None:
    cards = FakeCards()
    answer = await new_answer(store)
    await store.update_answer(answer.id, status=AnswerStatus.RUNNING, text="")
    task = asyncio.create_task(streamer(store, cards).stream(answer, ADDRESS))
    await store.append_answer_text(answer.id, "开头")
    await asyncio.sleep(0.05)
    await store.append_answer_text(answer.id, "，接着")  # inside the interval: held back
    await asyncio.sleep(1.0)  # the model pauses
    assert [u.content for u in cards.updates] == ["开头", "开头，接着"]
    await store.update_answer(answer.id, status=AnswerStatus.DONE, text="开头，接着。")
    await task
    assert cards.updates[-1].content == "开头，接着。"


async def test_a_failed_answer_finalizes_the_card_as_an_error(store: MemoryStore) -> None:
    cards = FakeCards()
    answer = await new_answer(store)
    task = asyncio.create_task(streamer(store, cards).stream(answer, ADDRESS))
    await store.update_answer(answer.id, status=AnswerStatus.FAILED, text="抱歉")
    await task
    assert [(u.content, u.finalize, u.error) for u in cards.updates] == [("抱歉", True, True)]


async def test_a_card_shows_at_most_max_bytes_and_says_how_far(store: MemoryStore) -> None:
    cards = FakeCards()
    answer = await new_answer(store)
    long = "\n\n".join(f"第{i}段。" + "内容" * 30 for i in range(20))
    task = asyncio.create_task(streamer(store, cards, max_bytes=600).stream(answer, ADDRESS))
    await store.update_answer(answer.id, status=AnswerStatus.DONE, text=long)
    upto = await task
    shown = cards.updates[-1].content
    assert utf8_len(shown) <= 600 and long.startswith(shown)
    assert 0 < upto < len(long) and long[:upto].rstrip() == shown


async def test_a_refused_card_raises_card_failed(store: MemoryStore) -> None:
    cards = FakeCards(fail_create=True)
    answer = await new_answer(store)
    await store.update_answer(answer.id, status=AnswerStatus.RUNNING, text="")
    with pytest.raises(CardFailed, match="no permission"):
        await streamer(store, cards).stream(answer, ADDRESS)
