"""Live answer updates: SSE events from the store's watch, coalesced, ending when they should."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus
from chatgate.store.memory import MemoryStore
from chatgate.web.live import LiveAnswers, sse_event

# Generous bound for what should happen at once; only a broken stream takes this long.
WITHIN = 5.0


def describe(record: AnswerRecord) -> Mapping[str, Any]:
    return {"status": record.status.value, "text": record.text}


async def running_answer(store: MemoryStore) -> AnswerRecord:
    record = AnswerRecord(
        id="a1",
        conversation="c",
        dedup_key="m1",
        kind=AnswerKind.LLM,
        question="q",
        page_token="t" * 22,
        status=AnswerStatus.RUNNING,
    )
    return await store.create_answer(record)


async def next_frame(stream: AsyncIterator[str]) -> str:
    async with asyncio.timeout(WITHIN):
        return await anext(stream)


def data(frame: str) -> dict[str, Any]:
    assert frame.startswith("data: ") and frame.endswith("\n\n"), frame
    loaded = json.loads(frame.removeprefix("data: "))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


async def test_stream_sends_retry_then_current_state_then_changes_and_ends_when_done(
    store: MemoryStore,
) -> None:
    record = await running_answer(store)
    live = LiveAnswers(store, min_interval=0)
    stream = live.events(record.id, describe)
    assert await next_frame(stream) == "retry: 1000\n\n"
    assert data(await next_frame(stream)) == {"status": "running", "text": ""}
    await store.append_answer_text(record.id, "你好")
    assert data(await next_frame(stream)) == {"status": "running", "text": "你好"}
    await store.update_answer(record.id, status=AnswerStatus.DONE, text="你好！")
    assert data(await next_frame(stream)) == {"status": "done", "text": "你好！"}
    with pytest.raises(StopAsyncIteration):
        await next_frame(stream)
    assert live.open_streams == 0


async def test_changes_made_between_events_are_coalesced_into_the_latest(
    store: MemoryStore,
) -> None:
    record = await running_answer(store)
    stream = LiveAnswers(store, min_interval=0).events(record.id, describe)
    await next_frame(stream)
    assert data(await next_frame(stream))["text"] == ""
    for i in range(100):
        await store.append_answer_text(record.id, str(i % 10))
    frame = data(await next_frame(stream))
    assert frame["text"] == "0123456789" * 10
    await stream.aclose()


async def test_a_finished_answer_gives_one_event_and_ends(store: MemoryStore) -> None:
    record = await running_answer(store)
    await store.update_answer(record.id, status=AnswerStatus.FAILED, text="sorry")
    frames = [f async for f in LiveAnswers(store).events(record.id, describe)]
    assert [data(f) for f in frames[1:]] == [{"status": "failed", "text": "sorry"}]


async def test_an_idle_stream_sends_keepalive_comments(store: MemoryStore) -> None:
    record = await running_answer(store)
    stream = LiveAnswers(store, keepalive=0.01).events(record.id, describe)
    await next_frame(stream)
    await next_frame(stream)
    assert await next_frame(stream) == ": keepalive\n\n"
    await stream.aclose()


async def test_a_stream_ends_after_its_lifetime_so_the_browser_reconnects(
    store: MemoryStore,
) -> None:
    record = await running_answer(store)
    live = LiveAnswers(store, lifetime=0.05, keepalive=10)
    async with asyncio.timeout(WITHIN):
        frames = [f async for f in live.events(record.id, describe)]
    assert frames[0] == "retry: 1000\n\n"
    assert all(not f.startswith("data: ") or data(f)["status"] == "running" for f in frames)
    assert live.open_streams == 0


async def test_close_ends_open_streams_and_refuses_new_ones(store: MemoryStore) -> None:
    record = await running_answer(store)
    live = LiveAnswers(store)
    stream = live.events(record.id, describe)
    await next_frame(stream)
    await next_frame(stream)
    assert live.open_streams == 1
    live.close()
    with pytest.raises(StopAsyncIteration):
        await next_frame(stream)
    async with asyncio.timeout(WITHIN):
        later = [f async for f in live.events(record.id, describe)]
    assert not any(f.startswith("data: ") for f in later)
    assert live.open_streams == 0


async def test_an_answer_deleted_while_watched_ends_its_stream(store: MemoryStore) -> None:
    record = await running_answer(store)
    stream = LiveAnswers(store).events(record.id, describe)
    await next_frame(stream)
    await next_frame(stream)
    await store.delete_conversation("c")
    with pytest.raises(StopAsyncIteration):
        await next_frame(stream)


def test_events_are_one_data_line_of_json() -> None:
    frame = sse_event({"html": "<p>一\n二</p>", "n": 1})
    assert frame == 'data: {"html":"<p>一\\n二</p>","n":1}\n\n'
