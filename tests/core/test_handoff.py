"""Answers a channel pushes itself: the finished-hook, and replies leaving them alone."""

from __future__ import annotations

import asyncio

from chatgate.core.delivery import (
    DELIVERY_META,
    PUSH_PATIENCE,
    PUSHED,
    REPLIES,
    Delivery,
    Surface,
    handed_off,
)
from chatgate.core.messages import Inbound, Kind
from chatgate.core.texts import Texts
from chatgate.errors import ProviderError
from chatgate.store.base import AnswerRecord, AnswerStatus
from chatgate.store.memory import MemoryStore
from tests.clock import FrozenClock
from tests.core.conftest import Core, Script, ScriptedProvider, build_core

PUSH_ME = ((DELIVERY_META, PUSHED),)


def msg(text: str, n: int, *, reply_to: tuple[tuple[str, str], ...] = ()) -> Inbound:
    return Inbound("wechat_mp", "gh_a", "u1", f"msg:{n}", Kind.TEXT, text=text, reply_to=reply_to)


async def finished(core: Core, answer_id: str) -> AnswerRecord:
    record = await core.store.wait_answer(answer_id, 5)
    assert record is not None and record.finished
    return record


async def test_finished_hooks_get_the_final_record_of_done_and_failed_answers(
    core: Core, provider: ScriptedProvider
) -> None:
    seen: list[AnswerRecord] = []
    core.jobs.on_finished(seen.append)
    provider.scripts["bad"] = Script(["half "], fail=ProviderError("boom"))
    good = await core.dispatcher.accept(msg("good", 1))
    bad = await core.dispatcher.accept(msg("bad", 2))
    await finished(core, good.answer.id)
    await finished(core, bad.answer.id)
    await asyncio.sleep(0)
    assert [(r.id, r.status) for r in seen] == [
        (good.answer.id, AnswerStatus.DONE),
        (bad.answer.id, AnswerStatus.FAILED),
    ]
    assert seen[0].text == "answer to good"
    assert seen[1].text.endswith("sorry")


async def test_started_hooks_run_when_the_job_calls_the_model_in_conversation_order(
    core: Core, provider: ScriptedProvider
) -> None:
    started: list[str] = []
    core.jobs.on_started(lambda record: started.append(record.question))
    gate = asyncio.Event()
    provider.scripts["first"] = Script(["a"], gate=gate)
    first = await core.dispatcher.accept(msg("first", 1))
    second = await core.dispatcher.accept(msg("second", 2))
    for _ in range(50):
        await asyncio.sleep(0.01)
    assert started == ["first"]  # the second waits for the first: not started yet
    gate.set()
    await finished(core, first.answer.id)
    await finished(core, second.answer.id)
    assert started == ["first", "second"]


async def test_a_failing_hook_neither_fails_the_answer_nor_silences_the_next_hook(
    core: Core,
) -> None:
    def broken(record: AnswerRecord) -> None:
        raise RuntimeError("listener bug")

    seen: list[str] = []
    core.jobs.on_finished(broken)
    core.jobs.on_finished(lambda record: seen.append(record.id))
    ticket = await core.dispatcher.accept(msg("q", 1))
    record = await finished(core, ticket.answer.id)
    assert record.status is AnswerStatus.DONE
    await core.supervisor.drain(1.0)
    stored = await core.store.get_answer(ticket.answer.id)
    assert stored is not None and stored.status is AnswerStatus.DONE
    assert seen == [ticket.answer.id]


async def test_a_pushed_answer_is_neither_fetched_nor_announced_until_given_back(
    core: Core,
) -> None:
    pushed = await core.dispatcher.accept(msg("pushed question", 1, reply_to=PUSH_ME))
    assert handed_off(pushed.answer)
    await finished(core, pushed.answer.id)

    # 「1」 does not take the answer the channel is pushing; it says it is on its way.
    fetch = await core.dispatcher.accept(msg("1", 2))
    ready = await core.delivery.ready(fetch.answer, asyncio.get_running_loop().time() + 2)
    assert ready is not None
    assert await core.delivery.reply_text(ready) == core.texts.arriving
    # A new answer does not announce it as unread either.
    other = await core.dispatcher.accept(msg("other", 3))
    other_record = await finished(core, other.answer.id)
    assert await core.delivery.reply_text(other_record) == "answer to other"

    # The channel gives it back (it could not push): now it is unread like any other.
    await core.store.update_answer(pushed.answer.id, meta={DELIVERY_META: REPLIES})
    third = await core.dispatcher.accept(msg("third", 4))
    third_record = await finished(core, third.answer.id)
    assert (await core.delivery.reply_text(third_record)).endswith(core.texts.pending_notice)
    fetch = await core.dispatcher.accept(msg("1", 5))
    ready = await core.delivery.ready(fetch.answer, asyncio.get_running_loop().time() + 2)
    assert ready is not None
    assert await core.delivery.reply_text(ready) == "answer to pushed question"


async def test_a_push_overdue_long_after_the_answer_finished_is_offered_to_1(
    store: MemoryStore, provider: ScriptedProvider
) -> None:
    clock = FrozenClock()
    core = build_core(store, provider)
    delivery = Delivery(store, Surface(max_bytes=2048), Texts(), answer_ttl=3600, clock=clock)
    pushed = await core.dispatcher.accept(msg("stuck push", 1, reply_to=PUSH_ME))
    record = await finished(core, pushed.answer.id)
    clock.now = (record.finished_at or 0) + 10
    fetch = await core.dispatcher.accept(msg("1", 2))
    ready = await delivery.ready(fetch.answer, clock.now + 2)
    assert ready is not None and ready.text == core.texts.arriving  # still being pushed
    clock.now += PUSH_PATIENCE  # never pushed (its process died, say): 「1」 gets it
    fetch = await core.dispatcher.accept(msg("1", 3))
    ready = await delivery.ready(fetch.answer, clock.now + 2)
    assert ready is not None and ready.text == "answer to stuck push"
    assert handed_off(record) and not handed_off(record, clock.now)
    await core.supervisor.drain(1.0)
