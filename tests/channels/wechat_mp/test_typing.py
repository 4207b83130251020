"""The typing indicator: shown at once, renewed while the answer runs, quiet when WeChat refuses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from chatgate.channels.wechat_mp import typing as typing_module
from chatgate.channels.wechat_mp.api import WeChatAPI, WeChatHTTP
from chatgate.channels.wechat_mp.token import TokenManager
from chatgate.channels.wechat_mp.typing import TypingIndicator
from chatgate.core.tasks import TaskSupervisor
from chatgate.sim.wechat_api import WeChatAPISim
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus
from chatgate.store.memory import MemoryStore

APPID = "wxtyping000000001"
USER = "o_user"
# WeChat's 15 s and 30 s, scaled down so the test takes a second or two.
LASTS = 0.3
NEEDS_INTERACTION = 1.6


@pytest.fixture
def wechat(monkeypatch: pytest.MonkeyPatch) -> WeChatAPISim:
    monkeypatch.setattr(typing_module, "LASTS", LASTS)
    monkeypatch.setattr(typing_module, "SHOW_AFTER", 0.0)
    monkeypatch.setattr(typing_module, "NEEDS_INTERACTION", NEEDS_INTERACTION)
    monkeypatch.setattr(typing_module, "_RENEW_MARGIN", 0.05)
    monkeypatch.setattr(typing_module, "_LATE_MARGIN", 0.3)
    return WeChatAPISim(
        appid=APPID,
        secret="s",
        typing_lasts=LASTS,
        typing_needs_interaction=NEEDS_INTERACTION,
    )


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    yield MemoryStore(poll_interval=0.01)


def indicator(
    wechat: WeChatAPISim, store: MemoryStore, supervisor: TaskSupervisor
) -> TypingIndicator:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=wechat.app))
    http = WeChatHTTP(client, "http://wechat")
    api = WeChatAPI(http, TokenManager(store, http, appid=APPID, secret="s"))
    return TypingIndicator(api, store, supervisor)


async def running_answer(store: MemoryStore) -> AnswerRecord:
    record = AnswerRecord(
        id=f"a{time.time()}",
        conversation=f"wechat_mp:gh_a:{USER}",
        dedup_key="m1",
        kind=AnswerKind.LLM,
        question="q",
        page_token=f"p{time.time()}",
        status=AnswerStatus.RUNNING,
    )
    return await store.create_answer(record)


async def test_typing_is_renewed_while_the_answer_runs_and_stops_when_it_is_done(
    wechat: WeChatAPISim, store: MemoryStore
) -> None:
    supervisor = TaskSupervisor(4)
    typing = indicator(wechat, store, supervisor)
    answer = await running_answer(store)
    wechat.user_wrote(USER)
    typing.show(USER, answer.id, time.time())
    typing.show(USER, answer.id, time.time())  # a retry's call changes nothing
    await asyncio.sleep(LASTS * 3)
    await store.update_answer(answer.id, status=AnswerStatus.DONE, text="x")
    await supervisor.drain(2.0)
    shown = len(wechat.typing)
    assert shown >= 2  # shown, then renewed once it lapsed …
    # … never while it still showed (45081), and no more once the answer was done.
    assert wechat.errcodes("/cgi-bin/message/custom/typing") == [0] * shown
    await asyncio.sleep(LASTS * 2)
    assert len(wechat.typing) == shown


async def ended(supervisor: TaskSupervisor, within: float = 3.0) -> bool:
    for _ in range(int(within / 0.05)):
        if supervisor.active == 0:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_typing_stops_before_wechat_would_refuse_it_for_lack_of_interaction(
    wechat: WeChatAPISim, store: MemoryStore
) -> None:
    supervisor = TaskSupervisor(4)
    typing = indicator(wechat, store, supervisor)
    answer = await running_answer(store)
    wechat.user_wrote(USER)
    typing.show(USER, answer.id, time.time())
    assert await ended(supervisor)  # the loop ends by itself, the answer still running
    assert 45080 not in wechat.errcodes("/cgi-bin/message/custom/typing")
    assert len(wechat.typing) >= 3


async def test_typing_refused_by_wechat_ends_quietly_and_stop_cancels_it(
    wechat: WeChatAPISim, store: MemoryStore
) -> None:
    supervisor = TaskSupervisor(4)
    typing = indicator(wechat, store, supervisor)
    first, second = await running_answer(store), await running_answer(store)
    typing.show(USER, first.id, time.time())  # the sim never saw the user write: 45080
    assert await ended(supervisor)
    assert wechat.errcodes("/cgi-bin/message/custom/typing") == [45080]
    wechat.user_wrote(USER)
    typing.show(USER, second.id, time.time())
    await asyncio.sleep(0.1)
    await typing.stop(second.id)
    assert supervisor.active == 0
    assert len(wechat.typing) == 1


async def test_an_answer_ready_within_a_second_gets_no_indicator(
    wechat: WeChatAPISim, store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(typing_module, "SHOW_AFTER", 0.5)
    supervisor = TaskSupervisor(4)
    typing = indicator(wechat, store, supervisor)
    answer = await running_answer(store)
    wechat.user_wrote(USER)
    typing.show(USER, answer.id, time.time())
    await asyncio.sleep(0.1)
    await store.update_answer(answer.id, status=AnswerStatus.DONE, text="quick")
    assert await ended(supervisor)
    assert wechat.typing == []


async def test_finished_ends_the_loop_at_once_without_waiting_for_the_next_renewal(
    wechat: WeChatAPISim, store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(typing_module, "LASTS", 30.0)  # the next renewal is far away
    supervisor = TaskSupervisor(4)
    typing = indicator(wechat, store, supervisor)
    answer = await running_answer(store)
    wechat.user_wrote(USER)
    typing.show(USER, answer.id, time.time())
    for _ in range(100):
        if wechat.typing:
            break
        await asyncio.sleep(0.02)
    typing.finished(answer.id)
    assert await ended(supervisor, within=1.0)
    assert len(wechat.typing) == 1
