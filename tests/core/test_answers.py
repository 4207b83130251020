"""Dispatcher, answer jobs and delivery working together over a memory store."""

from __future__ import annotations

import asyncio

from chatgate.core.dispatcher import new_answer_id
from chatgate.core.messages import Inbound, Kind
from chatgate.errors import ProviderError
from chatgate.store.base import AnswerKind, AnswerStatus
from tests.core.conftest import Core, Script, ScriptedProvider, build_core


def msg(text: str, n: int, user: str = "u1") -> Inbound:
    return Inbound("wechat_mp", "gh_a", user, f"msg:{n}", Kind.TEXT, text=text)


async def finished(core: Core, answer_id: str) -> str:
    record = await core.store.wait_answer(answer_id, 5)
    assert record is not None and record.finished
    return record.text


async def test_concurrent_tries_of_one_message_make_one_provider_call(core: Core) -> None:
    tickets = await asyncio.gather(*(core.dispatcher.accept(msg("q", 1)) for _ in range(3)))
    assert len({t.answer.id for t in tickets}) == 1
    assert sorted(t.attempt for t in tickets) == [1, 2, 3]
    assert [t.first for t in tickets].count(True) == 1
    assert await finished(core, tickets[0].answer.id) == "answer to q"
    assert core.provider.questions() == ["q"]


async def test_retry_after_finish_joins_the_finished_answer(core: Core) -> None:
    first = await core.dispatcher.accept(msg("q", 1))
    await finished(core, first.answer.id)
    again = await core.dispatcher.accept(msg("q", 1))
    assert again.answer.id == first.answer.id and not again.first
    assert again.answer.status is AnswerStatus.DONE
    assert len(core.provider.calls) == 1


async def test_partial_text_is_visible_while_the_answer_streams(
    store: object, provider: ScriptedProvider, core: Core
) -> None:
    gate = asyncio.Event()
    provider.scripts["slow"] = Script(["part one, ", "part two"], gate=gate)
    ticket = await core.dispatcher.accept(msg("slow", 1))
    for _ in range(100):
        record = await core.store.get_answer(ticket.answer.id)
        if record and record.text:
            break
        await asyncio.sleep(0.01)
    assert record is not None
    assert record.status is AnswerStatus.RUNNING and record.text == "part one, "
    gate.set()
    assert await finished(core, ticket.answer.id) == "part one, part two"


async def test_follow_up_waits_for_the_first_answer_and_sees_it(
    provider: ScriptedProvider, core: Core
) -> None:
    gate = asyncio.Event()
    provider.scripts["first"] = Script(["one"], gate=gate)
    a = await core.dispatcher.accept(msg("first", 1))
    b = await core.dispatcher.accept(msg("second", 2))
    await asyncio.sleep(0.05)
    assert provider.questions() == ["first"]  # the second waits its turn
    gate.set()
    await finished(core, b.answer.id)
    assert provider.questions() == ["first", "second"]
    context = [(m.role, m.content) for m in provider.calls[1].messages]
    assert context == [
        ("system", "sys"),
        ("user", "first"),
        ("assistant", "one"),
        ("user", "second"),
    ]
    del a


async def test_provider_error_becomes_the_apology_kept_as_the_answer(
    provider: ScriptedProvider, core: Core
) -> None:
    provider.scripts["bad"] = Script([], fail=ProviderError("boom", retryable=True))
    ticket = await core.dispatcher.accept(msg("bad", 1))
    assert await finished(core, ticket.answer.id) == "sorry"
    record = await core.store.get_answer(ticket.answer.id)
    assert record is not None and record.status is AnswerStatus.FAILED and record.error
    assert await core.store.recent_turns(record.conversation, 10) == []


async def test_timeout_becomes_the_apology(store: object, provider: ScriptedProvider) -> None:
    from chatgate.store.memory import MemoryStore

    assert isinstance(store, MemoryStore)
    core = build_core(store, provider, timeout=0.1)
    provider.scripts["hang"] = Script(["half"], hang=True)
    ticket = await core.dispatcher.accept(msg("hang", 1))
    text = await finished(core, ticket.answer.id)
    assert text == "half\n\nsorry"
    await core.supervisor.drain(1)


async def test_recover_reruns_answers_left_unfinished(store: object) -> None:
    from chatgate.store.memory import MemoryStore

    assert isinstance(store, MemoryStore)
    dead = ScriptedProvider(scripts={"q": Script(["x"], hang=True)})
    first = build_core(store, dead)
    ticket = await first.dispatcher.accept(msg("q", 1))
    await asyncio.sleep(0.05)
    assert await first.supervisor.drain(0.05) == 1  # "crash": the job is cancelled mid-answer
    record = await store.get_answer(ticket.answer.id)
    assert record is not None and record.status is AnswerStatus.RUNNING

    alive = ScriptedProvider()
    second = build_core(store, alive)
    assert await second.jobs.recover() == 1
    assert await finished(second, ticket.answer.id) == "answer to q"
    await second.supervisor.drain(1)


async def test_fetch_delivers_a_long_answer_part_by_part(
    store: object, provider: ScriptedProvider
) -> None:
    from chatgate.store.memory import MemoryStore

    assert isinstance(store, MemoryStore)
    core = build_core(store, provider, max_bytes=120)
    paragraphs = [f"段落{i}：" + "这是一句话。" * 3 for i in range(4)]
    provider.scripts["long"] = Script(["\n\n".join(paragraphs)])
    ticket = await core.dispatcher.accept(msg("long", 1))
    import time

    ready = await core.delivery.ready(ticket.answer, time.time() + 5)
    assert ready is not None
    shown = [await core.delivery.reply_text(ready)]
    n = 2
    while shown[-1].endswith(core.texts.more):
        fetch = await core.dispatcher.accept(msg("1", n))
        assert fetch.answer.kind is AnswerKind.FETCH
        got = await core.delivery.ready(fetch.answer, time.time() + 5)
        assert got is not None
        shown.append(await core.delivery.reply_text(got))
        n += 1
    assert len(shown) > 2
    assert all(len(s.encode()) <= 120 for s in shown)
    body = "\n\n".join(s.removesuffix(core.texts.more) for s in shown)
    assert body == "\n\n".join(paragraphs)
    nothing = await core.dispatcher.accept(msg("1", n))
    got = await core.delivery.ready(nothing.answer, time.time() + 5)
    assert got is not None and await core.delivery.reply_text(got) == core.texts.nothing_pending
    await core.supervisor.drain(1)


async def test_fetch_waits_for_a_running_answer_until_the_deadline(
    provider: ScriptedProvider, core: Core
) -> None:
    import time

    gate = asyncio.Event()
    provider.scripts["slow"] = Script(["a"], gate=gate)
    await core.dispatcher.accept(msg("slow", 1))
    fetch = await core.dispatcher.accept(msg("1", 2))
    assert await core.delivery.ready(fetch.answer, time.time() + 0.05) is None
    assert core.delivery.placeholder(fetch.answer) == core.texts.still_thinking
    asyncio.get_running_loop().call_later(0.05, gate.set)
    got = await core.delivery.ready(fetch.answer, time.time() + 5)
    assert got is not None and await core.delivery.reply_text(got) == "a"


async def test_a_new_question_is_answered_and_mentions_the_unread_answer(
    provider: ScriptedProvider, core: Core
) -> None:
    import time

    first = await core.dispatcher.accept(msg("first", 1))
    await finished(core, first.answer.id)  # finished but never delivered
    second = await core.dispatcher.accept(msg("second", 2))
    got = await core.delivery.ready(second.answer, time.time() + 5)
    assert got is not None
    assert await core.delivery.reply_text(got) == "answer to second" + core.texts.pending_notice


async def test_answer_ids_are_unique_and_sort_in_the_order_the_answers_were_made(
    core: Core,
) -> None:
    made = [new_answer_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert made == sorted(made)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)
    tickets = [await core.dispatcher.accept(msg(f"q{n}", n)) for n in range(5)]
    ids = [t.answer.id for t in tickets]
    assert ids == sorted(ids) and ids[0] > made[-1]
