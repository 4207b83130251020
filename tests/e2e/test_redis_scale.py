"""Scaled out on Redis, end to end: real gateway processes behind a round-robin proxy.

WeChat's tries of one message land on different instances; a worker dies mid-answer; Redis
restarts; three instances share one access token. Each test checks what the user saw (each
answer exactly once) and what it cost (LLM calls, token fetches).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from chatgate.core.texts import Texts
from chatgate.sim.wechat import WeChatSim
from chatgate.sim.wechat_api import WeChatAPISim
from chatgate.store.redis_keys import RedisKeys
from tests.e2e.conftest import LLM
from tests.e2e.harness import APPID, TOKEN, GatewayProcess
from tests.e2e.proxy import RoundRobinProxy
from tests.redis_server import RedisServer, started_server

pytestmark = pytest.mark.slow

TEXTS = Texts()
SECRET = "e2e-app-secret"


def expected(llm: LLM, *questions: str) -> str:
    return llm.sim.expected_answer([{"role": "user", "content": q} for q in questions])


def on_redis(url: str, prefix: str, **overrides: Any) -> dict[str, Any]:
    return {"store": url, "redis_prefix": prefix, **overrides}


@contextlib.asynccontextmanager
async def processes(*gateways: GatewayProcess) -> AsyncIterator[list[GatewayProcess]]:
    """Start them all at once; kill whatever is left at the end."""
    try:
        await asyncio.gather(*(g.start() for g in gateways))
        yield list(gateways)
    finally:
        for gateway in gateways:
            await gateway.__aexit__(None, None, None)


async def until(check: Callable[[], bool], within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def job_holder(url: str, prefix: str) -> str | None:
    """The consumer (``host:pid:tail``) holding the one pending job, if any."""
    keys = RedisKeys(prefix)
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        pending = await client.xpending_range(keys.jobs, keys.job_group, "-", "+", 10)
    finally:
        await client.aclose()
    return str(pending[0]["consumer"]) if pending else None


async def test_three_tries_on_three_instances_make_one_llm_call_and_the_third_replies_it(
    llm: LLM, redis_url: str, redis_prefix: str
) -> None:
    settings = on_redis(redis_url, redis_prefix)
    question = "三个实例一个回答 [delay=12]"
    async with (
        processes(*(GatewayProcess(llm.url, **settings) for _ in range(3))) as gateways,
        RoundRobinProxy([g.port for g in gateways]) as proxy,
    ):
        sim = WeChatSim(proxy.url + "/wechat", TOKEN)
        outcome = await sim.send_text("u1", question)
    assert outcome.kind == "reply" and outcome.tries == 3
    assert outcome.text == expected(llm, question)
    assert proxy.backends == [0, 1, 2]  # each try on another instance
    assert llm.questions() == [question]  # one LLM call for the three tries


async def test_a_1_on_another_instance_waits_for_the_answer_a_worker_elsewhere_writes(
    llm: LLM, redis_url: str, redis_prefix: str
) -> None:
    settings = on_redis(redis_url, redis_prefix)
    question = "很慢的问题 [delay=18]"
    web = [GatewayProcess(llm.url, role="web", **settings) for _ in range(2)]
    worker = GatewayProcess(llm.url, role="worker", **settings)
    async with processes(*web, worker), RoundRobinProxy([g.port for g in web]) as proxy:
        sim = WeChatSim(proxy.url + "/wechat", TOKEN)
        placeholder = await sim.send_text("u1", question)
        assert placeholder.tries == 3 and "回复「1」" in (placeholder.text or "")
        fetched = await sim.send_text("u1", "1")  # while the worker is still writing it
    assert proxy.backends == [0, 1, 0, 1]  # the 「1」 on the other web instance
    assert fetched.kind == "reply" and fetched.tries == 1
    assert fetched.text == expected(llm, question)
    assert llm.questions() == [question]


async def test_push_mode_three_tries_on_three_instances_one_llm_call_one_push(
    llm: LLM, redis_url: str, redis_prefix: str
) -> None:
    api = WeChatAPISim(appid=APPID, secret=SECRET)
    question = "推送模式三个实例 [delay=3]"
    async with api.serve() as api_base:
        settings = on_redis(
            redis_url,
            redis_prefix,
            wechat_mode="push",
            wechat_secret=SECRET,
            wechat_api_base=api_base,
        )
        async with (
            processes(*(GatewayProcess(llm.url, **settings) for _ in range(3))) as gateways,
            # The first two acknowledgements are lost: WeChat tries again, on the next instance.
            RoundRobinProxy([g.port for g in gateways], lose_replies=2) as proxy,
        ):
            sim = WeChatSim(proxy.url + "/wechat", TOKEN, on_message=api.user_wrote)
            outcome = await sim.send_text("u1", question)
            assert outcome.kind == "nothing" and outcome.tries == 3  # acknowledged: "success"
            await until(lambda: bool(api.received("u1")))
            await asyncio.sleep(2)  # time for a duplicate push to show, were there one
    assert proxy.backends == [0, 1, 2]
    assert api.received("u1") == [expected(llm, question)]
    assert llm.questions() == [question]


async def test_a_worker_killed_mid_answer_leaves_its_job_to_another_and_the_user_sees_it_once(
    llm: LLM, redis_url: str, redis_prefix: str
) -> None:
    settings = on_redis(redis_url, redis_prefix, job_claim_after=2)
    question = "被杀死的工作进程 [delay=4]"
    web = GatewayProcess(llm.url, role="web", **settings)
    workers = [GatewayProcess(llm.url, role="worker", **settings) for _ in range(2)]
    async with processes(web, *workers):
        sim = WeChatSim(web.wechat_url, TOKEN)
        asking = asyncio.create_task(sim.send_text("u1", question))
        await until(lambda: bool(llm.sim.calls))
        holder = await job_holder(redis_url, redis_prefix)
        assert holder is not None
        dying = next(w for w in workers if f":{w.pid}:" in holder)
        await dying.stop(signal.SIGKILL)

        outcome = await asking
        if outcome.text != expected(llm, question):
            # Not ready by the last try: the placeholder, and 「1」 fetches it.
            assert outcome.text is not None and "回复「1」" in outcome.text
            await until(lambda: len(llm.sim.calls) == 2)
            await asyncio.sleep(5)
            fetched = await sim.send_text("u1", "1")
            assert fetched.text == expected(llm, question)
        again = await sim.send_text("u1", "1")
        after = await job_holder(redis_url, redis_prefix)
    # Shown once: nothing is left for 「1」.
    assert again.text == TEXTS.nothing_pending
    assert after is None  # the survivor finished and acknowledged the job
    # The killed call never finished, so the survivor asked again.
    assert llm.questions() == [question, question]


async def test_a_follow_up_taken_by_another_worker_waits_for_the_answer_before_it(
    llm: LLM, redis_url: str, redis_prefix: str
) -> None:
    settings = on_redis(redis_url, redis_prefix)
    first, follow_up = "先问的问题 [delay=3]", "我刚才问了什么？"
    web = GatewayProcess(llm.url, role="web", **settings)
    # One job at a time each: the worker answering the first cannot take the follow-up.
    workers = [GatewayProcess(llm.url, role="worker", max_jobs=1, **settings) for _ in range(2)]
    async with processes(web, *workers):
        sim = WeChatSim(web.wechat_url, TOKEN)
        asking = asyncio.create_task(sim.send_text("u1", first))
        await until(lambda: bool(llm.sim.calls))
        answered = await sim.send_text("u1", follow_up)  # sent while the first is generated
        # (The first reply may add that another answer is unread: the follow-up's, then.)
        assert ((await asking).text or "").startswith(expected(llm, first))
    assert answered.text == expected(llm, first, follow_up)
    assert "先问的问题" in (answered.text or "")
    calls = llm.sim.calls
    assert [c.question for c in calls] == [first, follow_up]
    # The follow-up's call started once the first answer was complete, and carried it.
    assert calls[1].at >= calls[0].at + 2.5
    history = [m["content"] for m in calls[1].body["messages"] if m["role"] == "assistant"]
    assert history == [expected(llm, first)]


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, to restart."""
    with started_server() as server:
        yield server


async def test_after_a_redis_restart_during_idle_the_gateways_reconnect_and_serve(
    llm: LLM, own_redis: RedisServer
) -> None:
    settings = on_redis(own_redis.url, "chatgate:", job_claim_after=5)
    web = GatewayProcess(llm.url, role="web", **settings)
    worker = GatewayProcess(llm.url, role="worker", **settings)
    async with processes(web, worker):
        sim = WeChatSim(web.wechat_url, TOKEN)
        before = await sim.send_text("u1", "重启之前")
        assert before.text == expected(llm, "重启之前")

        own_redis.kill()
        await asyncio.sleep(1)
        own_redis.start()  # empty: this Redis keeps nothing on disk
        await asyncio.sleep(3)  # idle: no traffic while the gateways notice

        after = await sim.send_text("u2", "重启之后 [delay=6]")  # held over two tries
        fast = await sim.send_text("u3", "快的")
    assert after.kind == "reply" and after.text == expected(llm, "重启之后 [delay=6]")
    assert fast.text == expected(llm, "快的")
    assert llm.questions() == ["重启之前", "重启之后 [delay=6]", "快的"]


async def test_three_instances_fetch_the_access_token_once(
    llm: LLM, redis_url: str, redis_prefix: str
) -> None:
    api = WeChatAPISim(appid=APPID, secret=SECRET)
    users = [f"o_user_{i}" for i in range(6)]
    async with api.serve() as api_base:
        settings = on_redis(
            redis_url,
            redis_prefix,
            wechat_mode="push",
            wechat_secret=SECRET,
            wechat_api_base=api_base,
        )
        async with processes(*(GatewayProcess(llm.url, **settings) for _ in range(3))) as gws:
            sims = [WeChatSim(g.wechat_url, TOKEN, on_message=api.user_wrote) for g in gws]
            # Six users at once, two on each instance: every instance needs the token now.
            await asyncio.gather(
                *(sims[i % 3].send_text(user, f"问题{i}") for i, user in enumerate(users))
            )
            await until(lambda: all(api.received(u) for u in users))
    for i, user in enumerate(users):
        assert api.received(user) == [expected(llm, f"问题{i}")]
    assert api.token_calls() == 1


async def test_push_mode_a_worker_killed_while_pushing_leaves_the_push_to_another_sent_once(
    llm: LLM, redis_url: str, redis_prefix: str
) -> None:
    api = WeChatAPISim(appid=APPID, secret=SECRET)
    api.fail_next(2, errcode=-1)  # WeChat busy: the push backs off, and the worker dies then
    question = "推送途中被杀死 [delay=1]"
    async with api.serve() as api_base:
        settings = on_redis(
            redis_url,
            redis_prefix,
            job_claim_after=2,
            wechat_mode="push",
            wechat_secret=SECRET,
            wechat_api_base=api_base,
        )
        web = GatewayProcess(llm.url, role="web", **settings)
        workers = [GatewayProcess(llm.url, role="worker", **settings) for _ in range(2)]
        async with processes(web, *workers):
            sim = WeChatSim(web.wechat_url, TOKEN, on_message=api.user_wrote)
            outcome = await sim.send_text("u1", question)
            assert outcome.kind == "nothing"
            await until(lambda: api.errcodes() == [-1])  # generated; the push is backing off
            holder = await job_holder(redis_url, redis_prefix)
            assert holder is not None  # not acknowledged: the push is not done
            dying = next(w for w in workers if f":{w.pid}:" in holder)
            await dying.stop(signal.SIGKILL)
            await until(lambda: bool(api.received("u1")))
            await asyncio.sleep(2)  # time for a duplicate push to show, were there one
            after = await job_holder(redis_url, redis_prefix)
    assert api.received("u1") == [expected(llm, question)]
    assert after is None
    assert llm.questions() == [question]  # the answer was finished: not generated again
