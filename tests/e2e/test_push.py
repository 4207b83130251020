"""Push and hybrid delivery end to end: the real app, WeChat's timing, and the fake WeChat API.

Every test ends by checking that each answer reached the user exactly once — pushed, replied
inline, or fetched with 「1」 — and that each question cost one LLM call.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from chatgate.app.asgi import build_app
from chatgate.config import load_settings
from chatgate.core.precedence import Precedence
from chatgate.core.texts import Texts
from chatgate.sim.server import LoopbackServer
from chatgate.sim.wechat import SentRequest, WeChatSim
from chatgate.sim.wechat_api import WeChatAPISim
from tests.e2e.conftest import LLM
from tests.e2e.harness import (
    APPID,
    TOKEN,
    Gateway,
    GatewayProcess,
    gateway_in_process,
    gateway_settings,
)

pytestmark = pytest.mark.slow

SECRET = "e2e-app-secret"
USER = "o_push_user"
TEXTS = Texts()
NUMBER = re.compile(r"^\(\d+/\d+\) ")


@dataclass
class API:
    sim: WeChatAPISim
    base: str


@pytest.fixture
async def api() -> AsyncIterator[API]:
    sim = WeChatAPISim(appid=APPID, secret=SECRET)
    async with sim.serve() as base:
        yield API(sim, base)


def push_settings(api: API, mode: str, **overrides: Any) -> dict[str, Any]:
    return {
        "wechat_mode": mode,
        "wechat_secret": SECRET,
        "wechat_api_base": api.base,
        **overrides,
    }


@asynccontextmanager
async def gateway(llm: LLM, api: API, mode: str, **overrides: Any) -> AsyncIterator[Gateway]:
    async with gateway_in_process(llm.url, **push_settings(api, mode, **overrides)) as gw:
        yield gw


def wechat_for(url: str, api: API) -> WeChatSim:
    return WeChatSim(url, TOKEN, on_message=api.sim.user_wrote)


def expected(llm: LLM, *questions: str) -> str:
    return llm.sim.expected_answer([{"role": "user", "content": q} for q in questions])


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


async def until(check: Callable[[], bool], within: float = 20.0) -> None:
    """Wait for ``check`` to hold, polling; fail the test after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            pytest.fail(f"not true within {within}s")
        await asyncio.sleep(0.05)


async def settle(seconds: float = 1.0) -> None:
    """Give a wrongly duplicated push time to show up before counting."""
    await asyncio.sleep(seconds)


async def replay(request: SentRequest) -> httpx.Response:
    """Send a try again exactly as WeChat sent it: what a retry of the same MsgId looks like."""
    async with httpx.AsyncClient() as client:
        return await client.post(
            request.url,
            params=request.params,
            content=request.body.encode(),
            headers={"Content-Type": "text/xml; charset=utf-8"},
            timeout=5.0,
        )


async def test_push_acks_at_once_and_pushes_once_with_one_llm_call_though_wechat_retried(
    llm: LLM, api: API
) -> None:
    question = "推送的问题 [delay=3]"
    async with gateway(llm, api, "push") as gw:
        wechat = wechat_for(gw.wechat_url, api)
        outcome = await wechat.send_text(USER, question)
        # WeChat got `success` inside its window on the first try: no retry, nothing shown.
        assert (outcome.kind, outcome.tries) == ("nothing", 1)
        assert outcome.raw[0].took < gw.settings.wechat_reply_deadline
        # Retries of the same MsgId while the answer is generated (the ack got lost, say).
        first_try = wechat.sent[-1]
        retries = await asyncio.gather(*(replay(first_try) for _ in range(2)))
        assert [(r.status_code, r.text) for r in retries] == [(200, "success")] * 2
        await until(lambda: bool(api.sim.received(USER)))
        await settle()
        # A retry arriving after the push is acknowledged too, and changes nothing.
        assert (await replay(first_try)).text == "success"
        await settle(0.5)
    assert api.sim.received(USER) == [expected(llm, question)]
    assert llm.questions() == [question]
    assert api.sim.typing and api.sim.typing[0].user == USER  # typing shown while it ran


async def test_hybrid_replies_inline_when_fast_and_pushes_when_slow(llm: LLM, api: API) -> None:
    fast, slow = "快问题 [delay=1]", "慢问题 [delay=8]"
    async with gateway(llm, api, "hybrid") as gw:
        wechat = wechat_for(gw.wechat_url, api)
        inline = await wechat.send_text(USER, fast)
        assert (inline.kind, inline.text, inline.tries) == ("reply", expected(llm, fast), 1)
        assert api.sim.received(USER) == [] and api.sim.typing == []
        acked = await wechat.send_text(USER, slow)
        # Not ready by the first try's deadline: `success` on that try, typing, then the push.
        assert (acked.kind, acked.tries) == ("nothing", 1)
        await until(lambda: bool(api.sim.typing))
        await until(lambda: bool(api.sim.received(USER)))
        await settle()
    assert api.sim.received(USER) == [expected(llm, fast, slow)]
    assert llm.questions() == [fast, slow]
    assert api.sim.errcodes("/cgi-bin/message/custom/typing")[0] == 0


async def test_a_6000_byte_answer_arrives_in_numbered_parts_that_join_to_it(
    llm: LLM, api: API
) -> None:
    question = "长回答 [len=6000]"
    async with gateway(llm, api, "push") as gw:
        await wechat_for(gw.wechat_url, api).send_text(USER, question)
        await until(lambda: bool(api.sim.received(USER)))
        record = None
        for _ in range(200):
            answers = await gw.services.store.conversation_answers(f"wechat_mp:gh_sim:{USER}")
            record = answers[-1]
            if record.fully_delivered:
                break
            await asyncio.sleep(0.05)
        await settle()
    parts = api.sim.received(USER)
    assert len(parts) >= 3
    assert all(len(p.encode()) <= 2048 for p in parts)
    assert all(NUMBER.match(p) for p in parts)
    assert squash("".join(NUMBER.sub("", p) for p in parts)) == squash(expected(llm, question))
    assert record is not None and record.fully_delivered
    assert llm.questions() == [question]


async def test_48001_falls_back_to_passive_and_the_unpushed_answer_stays_fetchable(
    llm: LLM, api: API
) -> None:
    api.sim.verified = False
    first, second = "第一个问题", "第二个问题"
    async with gateway(llm, api, "push") as gw:
        wechat = wechat_for(gw.wechat_url, api)
        acked = await wechat.send_text(USER, first)
        assert acked.kind == "nothing"
        await until(lambda: 48001 in api.sim.errcodes())
        await settle(0.5)
        # The account may not push: the next message is answered in the reply, which
        # mentions the answer the user has not seen.
        replied = await wechat.send_text(USER, second)
        assert replied.text == expected(llm, first, second) + TEXTS.pending_notice
        fetched = await wechat.send_text(USER, "1")
        assert fetched.text == expected(llm, first)
        assert (await wechat.send_text(USER, "1")).text == TEXTS.nothing_pending
    assert api.sim.received(USER) == []
    assert api.sim.errcodes() == [48001]  # tried once, then remembered
    assert llm.questions() == [first, second]


async def test_45015_outside_the_48h_window_leaves_the_answer_for_1(llm: LLM, api: API) -> None:
    question = "两天后才回答的问题 [delay=2]"
    async with gateway(llm, api, "push") as gw:
        wechat = wechat_for(gw.wechat_url, api)
        await wechat.send_text(USER, question)
        api.sim.advance(49 * 3600)  # the answer is ready only after the window closed
        await until(lambda: 45015 in api.sim.errcodes())
        await settle(0.5)
        fetched = await wechat.send_text(USER, "1")
    assert fetched.text == expected(llm, question)
    assert api.sim.received(USER) == []
    assert llm.questions() == [question]


async def test_45047_stops_the_push_and_the_rest_comes_with_1(llm: LLM, api: API) -> None:
    api.sim.per_message_cap = 2  # WeChat allows fewer messages than we expect
    question = "很长的回答 [len=9000]"
    async with gateway(llm, api, "push") as gw:
        wechat = wechat_for(gw.wechat_url, api)
        await wechat.send_text(USER, question)
        await until(lambda: 45047 in api.sim.errcodes())
        await settle(0.5)
        pushed = api.sim.received(USER)
        fetched = [await wechat.send_text(USER, "1")]
        while (fetched[-1].text or "").endswith(TEXTS.more):
            fetched.append(await wechat.send_text(USER, "1"))
    assert len(pushed) == 2
    shown = [NUMBER.sub("", p) for p in pushed]
    shown += [(f.text or "").removesuffix(TEXTS.more) for f in fetched]
    assert squash("".join(shown)) == squash(expected(llm, question))
    assert llm.questions() == [question]


async def test_40001_a_token_invalidated_behind_our_back_is_replaced_and_nothing_lost(
    llm: LLM, api: API
) -> None:
    first, second = "问题一", "问题二"
    async with gateway(llm, api, "push") as gw:
        wechat = wechat_for(gw.wechat_url, api)
        await wechat.send_text(USER, first)
        await until(lambda: len(api.sim.received(USER)) == 1)
        api.sim.invalidate_tokens()
        await wechat.send_text(USER, second)
        await until(lambda: len(api.sim.received(USER)) == 2)
        await settle()
    assert api.sim.received(USER) == [expected(llm, first), expected(llm, first, second)]
    assert api.sim.errcodes() == [0, 40001, 0]
    assert api.sim.token_calls() == 2


async def test_errcode_minus_1_is_retried_and_delivered_once(llm: LLM, api: API) -> None:
    question = "系统繁忙时的问题"
    api.sim.fail_next(2, errcode=-1)
    async with gateway(llm, api, "push") as gw:
        await wechat_for(gw.wechat_url, api).send_text(USER, question)
        await until(lambda: bool(api.sim.received(USER)))
        await settle()
    assert api.sim.received(USER) == [expected(llm, question)]
    assert api.sim.errcodes() == [-1, -1, 0]


async def test_two_gateway_processes_on_one_sqlite_store_fetch_the_token_once(
    llm: LLM, api: API, tmp_path: Path
) -> None:
    settings = push_settings(api, "push", store=f"sqlite:///{tmp_path / 'gw.db'}")
    async with (
        GatewayProcess(llm.url, **settings) as one,
        GatewayProcess(llm.url, **settings) as two,
    ):
        users = ["o_user_a", "o_user_b", "o_user_c", "o_user_d"]
        gateways = [one, two, one, two]
        questions = [f"问题 {u} [delay=1]" for u in users]
        await asyncio.gather(
            *(
                wechat_for(gw.wechat_url, api).send_text(user, q)
                for gw, user, q in zip(gateways, users, questions, strict=True)
            )
        )
        await until(lambda: all(api.sim.received(u) for u in users))
        await settle()
    for user, question in zip(users, questions, strict=True):
        assert api.sim.received(user) == [expected(llm, question)]
    assert api.sim.token_calls() == 1
    assert sorted(llm.questions()) == sorted(questions)


async def test_a_push_cut_short_by_a_crash_is_resumed_after_restart_once(
    llm: LLM, api: API, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'gw.db'}"
    question = "推送途中进程崩溃 [len=3000]"
    async with GatewayProcess(llm.url, **push_settings(api, "push", store=store)) as gw:
        wechat = wechat_for(gw.wechat_url, api)
        # WeChat is busy: the push backs off 1 s, then 2 s; the process dies in the second
        # wait (0.5 s in, clear of both sends), holding no lock.
        api.sim.fail_next(3, errcode=-1)
        await wechat.send_text(USER, question)
        await until(lambda: len(api.sim.errcodes()) == 2)
        await asyncio.sleep(0.5)
        await gw.stop(signal.SIGKILL)
        assert api.sim.errcodes() == [-1, -1]
        assert api.sim.received(USER) == []
        await gw.start()
        await until(lambda: len(api.sim.received(USER)) == 2)
        await settle()
    parts = api.sim.received(USER)
    assert squash("".join(NUMBER.sub("", p) for p in parts)) == squash(expected(llm, question))
    assert llm.questions() == [question]


async def test_a_job_killed_mid_answer_is_pushed_after_restart(
    llm: LLM, api: API, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'gw.db'}"
    question = "被打断的推送问题 [delay=6]"
    async with GatewayProcess(llm.url, **push_settings(api, "push", store=store)) as gw:
        wechat = wechat_for(gw.wechat_url, api)
        acked = await wechat.send_text(USER, question)
        assert acked.kind == "nothing"
        await until(lambda: bool(llm.sim.calls))
        await gw.stop(signal.SIGKILL)
        await gw.start()
        await until(lambda: bool(api.sim.received(USER)))
        await settle()
    assert api.sim.received(USER) == [expected(llm, question)]
    # The killed call's answer never reached the store; the recovered job asked again.
    assert llm.questions() == [question, question]


async def test_1_while_a_pushed_answer_is_generated_says_it_is_on_its_way(
    llm: LLM, api: API
) -> None:
    question = "还在生成的问题 [delay=4]"
    async with gateway(llm, api, "push") as gw:
        wechat = wechat_for(gw.wechat_url, api)
        await wechat.send_text(USER, question)
        impatient = await wechat.send_text(USER, "1")
        assert (impatient.kind, impatient.text) == ("reply", TEXTS.arriving)
        await until(lambda: bool(api.sim.received(USER)))
        await settle()
    assert api.sim.received(USER) == [expected(llm, question)]
    assert llm.questions() == [question]


async def test_hybrid_replies_the_first_part_of_a_long_fast_answer_and_pushes_the_rest(
    llm: LLM, api: API
) -> None:
    question = "快而长的回答 [len=6000]"
    async with gateway(llm, api, "hybrid") as gw:
        wechat = wechat_for(gw.wechat_url, api)
        inline = await wechat.send_text(USER, question)
        assert (inline.kind, inline.tries) == ("reply", 1)
        await until(lambda: len(api.sim.received(USER)) >= 2)
        await settle()
    shown = [inline.text or "", *api.sim.received(USER)]
    total = len(shown)
    assert [NUMBER.match(t).group(0) for t in shown if NUMBER.match(t)] == [
        f"({i}/{total}) " for i in range(1, total + 1)
    ]
    assert all(len(t.encode()) <= 2048 for t in shown)
    assert squash("".join(NUMBER.sub("", t) for t in shown)) == squash(expected(llm, question))
    assert "回复1" not in "".join(shown)  # nothing left for 「1」
    assert llm.questions() == [question]


def push_app(llm: LLM, api: API, precedence: Precedence) -> tuple[Starlette, str]:
    """A push-mode gateway whose acknowledgements go first by ``precedence``; its webhook path."""
    settings = load_settings(environ={}, **gateway_settings(llm.url, **push_settings(api, "push")))
    return build_app(settings, precedence=precedence), settings.wechat_path


async def test_acks_go_first_while_webhooks_load_the_loop_and_answers_follow_once_they_stop(
    llm: LLM, api: API
) -> None:
    # Any lateness counts as busy, so the loop is "loaded" exactly while the test's clock says
    # messages arrived lately; the releaser's waits end when the test ticks.
    clock = [0.0]
    ticks: asyncio.Queue[None] = asyncio.Queue()

    async def tick_sleep(seconds: float) -> None:
        await ticks.get()

    precedence = Precedence(busy_lag=0.0, recent=1.0, clock=lambda: clock[0], sleep=tick_sleep)
    app, path = push_app(llm, api, precedence)
    users = [f"{USER}-{n}" for n in range(3)]
    async with LoopbackServer(app) as server:
        wechat = wechat_for(server.url + path, api)
        outcomes = await asyncio.gather(*(wechat.send_text(u, f"问题{u}") for u in users))
        assert [(o.kind, o.tries) for o in outcomes] == [("nothing", 1)] * 3
        await settle(0.5)
        # One unit of background work went (the oldest: the first answer job); the rest wait.
        assert len(llm.questions()) <= 1
        assert not any(api.sim.received(u) for u in users)
        assert precedence.waiting >= 3
        clock[0] += 5.0  # no message lately: the loop is the background work's again
        ticks.put_nowait(None)
        await until(lambda: all(api.sim.received(u) for u in users))
        await settle(0.5)
    assert sorted(llm.questions()) == sorted(f"问题{u}" for u in users)
    assert [api.sim.received(u) for u in users] == [[expected(llm, f"问题{u}")] for u in users]


async def test_a_drain_starts_the_answers_still_waiting_behind_acknowledgements(
    llm: LLM, api: API
) -> None:
    # The releaser never wakes: only the drain lets the waiting answers start, so they get the
    # grace to be generated and pushed.
    async def never(seconds: float) -> None:
        await asyncio.Event().wait()

    clock = [0.0]
    precedence = Precedence(busy_lag=0.0, recent=1.0, clock=lambda: clock[0], sleep=never)
    app, path = push_app(llm, api, precedence)
    users = [f"{USER}-{n}" for n in range(3)]
    async with LoopbackServer(app) as server:
        wechat = wechat_for(server.url + path, api)
        await asyncio.gather(*(wechat.send_text(u, f"问题{u}") for u in users))
        await settle(0.3)
        assert precedence.waiting >= 3
        app.state.lifecycle.begin_drain()
        assert precedence.waiting == 0
        clock[0] += 5.0  # no webhook since: the parts' pushes pass at once
        await until(lambda: all(api.sim.received(u) for u in users))
    assert [api.sim.received(u) for u in users] == [[expected(llm, f"问题{u}")] for u in users]
