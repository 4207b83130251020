"""The pusher against the fake WeChat API: each part once, numbered, capped, given back."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import httpx
import pytest

from chatgate.channels.wechat_mp.api import RetryPolicy, WeChatAPI, WeChatHTTP
from chatgate.channels.wechat_mp.push import (
    PUSH_SENT,
    PUSH_STATE,
    PendingPushes,
    Pusher,
    forbidden_key,
)
from chatgate.channels.wechat_mp.token import TokenManager
from chatgate.core.delivery import DELIVERY_META, PUSHED, REPLIES, Surface, cut_parts, handed_off
from chatgate.core.plaintext import markdown_to_text
from chatgate.core.precedence import Precedence
from chatgate.core.splitting import utf8_len
from chatgate.core.tasks import TaskSupervisor
from chatgate.core.texts import Texts
from chatgate.sim.wechat_api import WeChatAPISim
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus
from chatgate.store.memory import MemoryStore

APPID = "wxpush00000000001"
SECRET = "push-secret"
USER = "o_user"
CONVERSATION = f"wechat_mp:gh_a:{USER}"
LINK = "https://bot.example.com/a/tok"
TEXTS = Texts()
NUMBER = re.compile(r"^\((\d+)/(\d+)\) ")


def paragraphs(n_bytes: int) -> str:
    """Numbered Chinese paragraphs, about ``n_bytes`` UTF-8 bytes in all."""
    out: list[str] = []
    while utf8_len("\n\n".join(out)) < n_bytes:
        i = len(out) + 1
        out.append(f"第{i}段。" + "这是一个用来测试推送切分的句子。" * 8)
    return "\n\n".join(out)


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def number_of(text: str) -> tuple[int, int]:
    match = NUMBER.match(text)
    assert match is not None, text
    return int(match.group(1)), int(match.group(2))


def bodies(texts: list[str]) -> list[str]:
    return [NUMBER.sub("", t) for t in texts]


async def no_sleep(seconds: float) -> None:
    return None


@dataclass
class Rig:
    store: MemoryStore
    wechat: WeChatAPISim
    pusher: Pusher
    supervisor: TaskSupervisor

    async def answer(self, text: str, *, key: str | None = None, **meta: str) -> AnswerRecord:
        now = time.time()
        key = key or str(now)
        record = AnswerRecord(
            id=f"a{key}",
            conversation=CONVERSATION,
            dedup_key=f"m{key}",
            kind=AnswerKind.LLM,
            question="q",
            page_token=f"p{key}",
            status=AnswerStatus.DONE,
            text=text,
            finished_at=now,
            meta={DELIVERY_META: PUSHED, **meta},
        )
        return await self.store.create_answer(record)

    async def record(self, answer_id: str) -> AnswerRecord:
        record = await self.store.get_answer(answer_id)
        assert record is not None
        return record


def make_rig(
    wechat: WeChatAPISim,
    *,
    max_messages: int = 5,
    link: bool = False,
    precedence: Precedence | None = None,
) -> Rig:
    store = MemoryStore(poll_interval=0.01)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=wechat.app))
    http = WeChatHTTP(client, "http://wechat", retry=RetryPolicy(attempts=3), sleep=no_sleep)
    tokens = TokenManager(store, http, appid=APPID, secret=SECRET)
    supervisor = TaskSupervisor(8)
    surface = Surface(
        max_bytes=2048,
        render=markdown_to_text,
        link_for=(lambda answer: LINK) if link else (lambda answer: None),
    )
    pusher = Pusher(
        store,
        WeChatAPI(http, tokens),
        surface,
        TEXTS,
        supervisor,
        max_messages=max_messages,
        answer_ttl=3600,
        retry=RetryPolicy(attempts=3),
        sleep=no_sleep,
        precedence=precedence,
    )
    wechat.user_wrote(USER)
    return Rig(store, wechat, pusher, supervisor)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = make_rig(WeChatAPISim(appid=APPID, secret=SECRET))
    yield r
    await r.supervisor.drain(2.0)


async def test_a_short_answer_is_one_message_without_a_number(rig: Rig) -> None:
    answer = await rig.answer("**你好**，这是回答。")
    await rig.pusher.push(answer.id)
    assert rig.wechat.received(USER) == ["你好，这是回答。"]
    record = await rig.record(answer.id)
    assert record.fully_delivered and record.meta[PUSH_STATE] == "done"
    assert record.meta[PUSH_SENT] == "1"


async def test_a_long_answer_arrives_numbered_in_parts_under_the_limit_that_join_to_it(
    rig: Rig,
) -> None:
    text = paragraphs(6000)
    answer = await rig.answer(text)
    await rig.pusher.push(answer.id)
    received = rig.wechat.received(USER)
    assert len(received) == 4
    assert all(utf8_len(t) <= 2048 for t in received)
    assert [number_of(t) for t in received] == [(i, 4) for i in range(1, 5)]
    assert squash("".join(bodies(received))) == squash(text)
    assert (await rig.record(answer.id)).fully_delivered


async def test_pushing_twice_at_once_sends_each_part_once(rig: Rig) -> None:
    answer = await rig.answer(paragraphs(5000))
    await asyncio.gather(*(rig.pusher.push(answer.id) for _ in range(4)))
    received = rig.wechat.received(USER)
    assert len(received) == len(set(received)) == 3
    await rig.pusher.push(answer.id)
    assert len(rig.wechat.received(USER)) == 3


async def test_an_answer_over_the_message_cap_ends_with_how_to_read_the_rest() -> None:
    rig = make_rig(WeChatAPISim(appid=APPID, secret=SECRET), link=True)
    text = paragraphs(20000)
    answer = await rig.answer(text)
    await rig.pusher.push(answer.id)
    received = rig.wechat.received(USER)
    assert len(received) == 5
    assert all(utf8_len(t) <= 2048 for t in received)
    assert received[-1].endswith(TEXTS.more_with_link.format(link=LINK))
    total = number_of(received[0])[1]
    assert total > 5
    assert received[-1].startswith(f"(5/{total}) ")
    record = await rig.record(answer.id)
    # Given back: the rest waits for 「1」 from where the pushes stopped.
    assert not handed_off(record) and record.meta[DELIVERY_META] == REPLIES
    assert record.meta[PUSH_STATE] == "stopped:cap"
    shown = squash("".join(bodies(received)).removesuffix(TEXTS.more_with_link.format(link=LINK)))
    assert squash(text[: record.delivered_upto]) == squash(shown)
    assert rig.wechat.errcodes() == [0] * 5  # the platform's cap was never hit


async def test_45047_stops_the_push_and_keeps_the_rest_for_1() -> None:
    rig = make_rig(WeChatAPISim(appid=APPID, secret=SECRET, per_message_cap=2))
    text = paragraphs(8000)
    answer = await rig.answer(text)
    await rig.pusher.push(answer.id)
    received = rig.wechat.received(USER)
    assert len(received) == 2
    record = await rig.record(answer.id)
    assert record.meta[PUSH_STATE] == "stopped:45047"
    assert not handed_off(record)
    assert squash(text[: record.delivered_upto]) == squash("".join(bodies(received)))


async def test_45015_stops_the_push_and_gives_the_answer_back(rig: Rig) -> None:
    rig.wechat.advance(48 * 3600 + 60)
    answer = await rig.answer("迟到的回答")
    await rig.pusher.push(answer.id)
    record = await rig.record(answer.id)
    assert rig.wechat.received(USER) == []
    assert record.meta[PUSH_STATE] == "stopped:45015" and record.delivered_upto == 0
    assert not handed_off(record)


async def test_48001_is_remembered_for_the_account_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = make_rig(WeChatAPISim(appid=APPID, secret=SECRET, verified=False))
    caplog.set_level(logging.ERROR)
    first, second = await rig.answer("一"), await rig.answer("二")
    await rig.pusher.push(first.id)
    await rig.pusher.push(second.id)
    assert await rig.pusher.forbidden("gh_a")
    assert await rig.store.kv_get(forbidden_key("gh_a")) == "48001"
    assert rig.wechat.errcodes() == [48001]  # the second answer was not even tried
    for answer in (first, second):
        record = await rig.record(answer.id)
        assert not handed_off(record) and record.delivered_upto == 0
    logged = [r.getMessage() for r in caplog.records if "may not push" in r.getMessage()]
    assert len(logged) == 1 and "gh_a" in logged[0]


async def test_transient_failures_are_retried_and_nothing_is_sent_twice(rig: Rig) -> None:
    answer = await rig.answer(paragraphs(5000))
    rig.wechat.fail_next(2, errcode=-1)
    await rig.pusher.push(answer.id)
    received = rig.wechat.received(USER)
    assert len(received) == len(set(received)) == 3
    assert rig.wechat.errcodes() == [-1, -1, 0, 0, 0]
    assert (await rig.record(answer.id)).fully_delivered


async def test_failures_that_outlast_the_retries_give_the_answer_back(rig: Rig) -> None:
    answer = await rig.answer("回答")
    rig.wechat.fail_next(3, status=503)
    await rig.pusher.push(answer.id)
    record = await rig.record(answer.id)
    assert rig.wechat.received(USER) == []
    assert record.meta[PUSH_STATE] == "stopped:transient" and not handed_off(record)


async def test_a_token_invalidated_behind_our_back_is_replaced_and_the_part_sent(rig: Rig) -> None:
    await rig.pusher.push((await rig.answer("第一条")).id)
    rig.wechat.invalidate_tokens()
    await rig.pusher.push((await rig.answer("第二条")).id)
    assert rig.wechat.received(USER) == ["第一条", "第二条"]
    assert rig.wechat.errcodes() == [0, 40001, 0]
    assert rig.wechat.token_calls() == 2


async def test_45002_makes_the_parts_smaller_until_they_fit() -> None:
    rig = make_rig(WeChatAPISim(appid=APPID, secret=SECRET, max_text_bytes=900))
    text = paragraphs(3000)
    answer = await rig.answer(text)
    await rig.pusher.push(answer.id)
    received = rig.wechat.received(USER)
    assert all(utf8_len(t) <= 900 for t in received)
    assert squash("".join(bodies(received))) == squash(text)
    assert (await rig.record(answer.id)).fully_delivered
    assert 45002 in rig.wechat.errcodes()


async def test_resume_continues_after_the_parts_already_sent(rig: Rig) -> None:
    text = paragraphs(7000)
    # The pusher's own cut: room for a part number and for the unread notice.
    budget = 2048 - utf8_len("(99/99) ") - utf8_len(TEXTS.pending_notice)
    numbered = Surface(max_bytes=budget, render=markdown_to_text)
    parts = cut_parts(text, numbered)
    assert len(parts) == 4
    # A previous run sent two parts and died.
    answer = await rig.answer(text, **{PUSH_SENT: "2"})
    await rig.store.mark_delivered(answer.id, parts[1].upto)
    await PendingPushes(rig.store, 3600).add(answer.id)
    await rig.pusher.resume()
    await rig.supervisor.drain(5.0)
    received = rig.wechat.received(USER)
    assert [number_of(t) for t in received] == [(3, 4), (4, 4)]
    assert squash("".join(bodies(received))) == squash(text[parts[1].upto :])
    assert await PendingPushes(rig.store, 3600).ids() == []


async def test_the_last_part_mentions_another_answer_waiting_for_1(rig: Rig) -> None:
    waiting = await rig.answer("没推送成功的回答", **{DELIVERY_META: REPLIES})
    answer = await rig.answer("新的回答")
    await rig.pusher.push(answer.id)
    assert rig.wechat.received(USER) == ["新的回答" + TEXTS.pending_notice]
    assert not (await rig.record(waiting.id)).fully_delivered


async def test_the_finished_hook_pushes_only_wechat_answers_handed_to_push(rig: Rig) -> None:
    pushed = await rig.answer("推送")
    shown = await rig.answer("行内")
    await rig.store.mark_delivered(shown.id, len(shown.text))  # replied inline
    inline = await rig.store.update_answer(shown.id, meta={DELIVERY_META: REPLIES})
    assert inline is not None
    other = replace(pushed, id="x", conversation="dingtalk:bot:u1")
    for record in (other, inline, pushed):
        rig.pusher.job_finished(record)
    await rig.supervisor.drain(5.0)
    assert rig.wechat.received(USER) == ["推送"]


async def test_a_long_answer_replied_inline_in_part_has_the_rest_pushed_numbered_on(
    rig: Rig,
) -> None:
    text = paragraphs(6000)
    answer = await rig.answer(text, **{DELIVERY_META: ""})
    inline = await rig.pusher.reply_first_push_rest(answer, reply_bytes=2048)
    await rig.supervisor.drain(5.0)
    pushed = rig.wechat.received(USER)
    shown = [inline, *pushed]
    total = len(shown)
    assert [number_of(t) for t in shown] == [(i, total) for i in range(1, total + 1)]
    assert all(utf8_len(t) <= 2048 for t in shown)
    assert squash("".join(bodies(shown))) == squash(text)
    record = await rig.record(answer.id)
    assert record.fully_delivered and record.meta[PUSH_SENT] == str(total)


async def test_follow_ups_held_back_keep_neither_their_records_nor_more_for_the_collector() -> None:
    # As with answer jobs: each young collection in a burst walks what the held follow-ups
    # keep alive, and every field of each, with every acknowledgement in flight waiting: the
    # answer's id in a queue, no record, closure, cell or tuple.
    async def never(seconds: float) -> None:
        await asyncio.Event().wait()

    precedence = Precedence(busy_lag=0.0, recent=60.0, sleep=never)
    precedence.arrived()
    rig = make_rig(WeChatAPISim(appid=APPID, secret=SECRET), precedence=precedence)
    answers = [await rig.answer(f"回答{n}", key=str(n)) for n in range(51)]
    await rig.pusher.hand_over(answers[0], interacted=time.time())  # starts the releaser
    gc.collect()
    before = len(gc.get_objects())
    references = [sys.getrefcount(answer) for answer in answers[1:]]
    for n in range(1, len(answers)):  # no loop variable left to hold the last record
        await rig.pusher.hand_over(answers[n], interacted=time.time())
    gc.collect()
    assert precedence.waiting == 51
    assert len(gc.get_objects()) - before <= 10  # nothing per follow-up: 50 would be one apiece
    assert [sys.getrefcount(answer) for answer in answers[1:]] == references
    await precedence.aclose()  # lets them all through, to push as usual
    await rig.supervisor.drain(2.0)
