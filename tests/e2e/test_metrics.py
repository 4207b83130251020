"""``/metrics`` after a simulated conversation: exactly the counts the conversation caused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from chatgate.sim.wechat import WeChatSim
from chatgate.sim.wechat_api import WeChatAPISim
from tests.app.support import total, value
from tests.e2e.conftest import LLM
from tests.e2e.harness import APPID, TOKEN, gateway_in_process
from tests.e2e.test_passive import post_raw

pytestmark = pytest.mark.slow

SECRET = "e2e-app-secret"
USER = "o_metrics_user"


async def test_metrics_count_messages_tries_deliveries_and_model_calls(llm: LLM) -> None:
    refused_q = "出错的问题 [fail=400]"
    fast_q = "快问题 [delay=1]"
    retried_q = "要重试一次的问题 [delay=7]"
    slow_q = "慢问题 [delay=16]"
    async with gateway_in_process(llm.url) as gw, httpx.AsyncClient() as client:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        apology = await sim.send_text("u1", refused_q)  # the model refuses: apology, inline
        fast = await sim.send_text("u1", fast_q)  # inline on try 1
        retried = await sim.send_text("u1", retried_q)  # inline on try 2
        deferred = await sim.send_text("u1", slow_q)  # placeholder on try 3
        fetched = await sim.send_text("u1", "1")  # the slow answer, fetched with 「1」
        assert (await post_raw(gw.wechat_url, b"<xml/>", sign=False)).status_code == 403
        text = (await client.get(gw.url + "/metrics")).text

    assert [o.tries for o in (apology, fast, retried, deferred, fetched)] == [1, 1, 2, 3, 1]
    assert fetched.text == llm.sim.expected_answer(
        [{"role": "user", "content": q} for q in (fast_q, retried_q, slow_q)]
    )

    def metric(name: str, **labels: str) -> float | None:
        return value(text, name, channel="wechat_mp", **labels)

    assert metric("chatgate_messages_received_total", kind="text") == 5
    assert total(text, "chatgate_messages_received_total") == 5
    assert metric("chatgate_tries_total", attempt="1") == 5
    assert metric("chatgate_tries_total", attempt="2") == 2
    assert metric("chatgate_tries_total", attempt="3") == 1
    assert total(text, "chatgate_tries_total") == 8
    assert metric("chatgate_deliveries_total", path="inline_try_1") == 2
    assert metric("chatgate_deliveries_total", path="inline_try_2") == 1
    assert metric("chatgate_deliveries_total", path="inline_try_3") == 0
    assert metric("chatgate_deliveries_total", path="fetch") == 1
    assert metric("chatgate_deliveries_total", path="push") == 0
    assert total(text, "chatgate_deliveries_total") == 4
    assert metric("chatgate_answers_deferred_total") == 1
    assert total(text, "chatgate_answers_lost_total") == 0
    assert metric("chatgate_webhook_refused_total", reason="signature") == 1
    # One model call per question, whatever WeChat retried; the refused one counted as an error.
    assert len(llm.sim.calls) == 4
    assert value(text, "chatgate_llm_calls_total", provider="openai") == 4
    assert value(text, "chatgate_llm_call_seconds_count", provider="openai") == 4
    assert value(text, "chatgate_llm_errors_total", provider="openai", code="400") == 1
    assert total(text, "chatgate_llm_errors_total") == 1
    assert value(text, "chatgate_llm_first_chunk_seconds_count", provider="openai") == 3
    assert value(text, "chatgate_jobs_queued") == 0
    assert value(text, "chatgate_jobs_running") == 0


@pytest.fixture
async def wechat_api() -> AsyncIterator[tuple[WeChatAPISim, str]]:
    sim = WeChatAPISim(appid=APPID, secret=SECRET)
    async with sim.serve() as base:
        yield sim, base


async def until(check: Callable[[], bool], within: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, f"not true within {within}s"
        await asyncio.sleep(0.05)


async def test_metrics_count_pushes_api_errors_and_token_refreshes_in_hybrid_mode(
    llm: LLM, wechat_api: tuple[WeChatAPISim, str]
) -> None:
    api, base = wechat_api
    fast_q, slow_q, late_q = "快问题 [delay=1]", "慢问题 [delay=6]", "窗口关了的问题 [delay=6]"
    settings = {"wechat_mode": "hybrid", "wechat_secret": SECRET, "wechat_api_base": base}
    async with gateway_in_process(llm.url, **settings) as gw, httpx.AsyncClient() as client:
        sim = WeChatSim(gw.wechat_url, TOKEN, on_message=api.user_wrote)
        assert (await sim.send_text(USER, fast_q)).kind == "reply"  # inline on try 1
        assert (await sim.send_text(USER, slow_q)).kind == "nothing"  # acknowledged, pushed
        await until(lambda: len(api.received(USER)) == 1)
        assert (await sim.send_text(USER, late_q)).kind == "nothing"
        api.advance(49 * 3600)  # the 48-hour window closes before the answer is ready
        await until(lambda: 45015 in api.errcodes())
        fetched = await sim.send_text(USER, "1")  # what push could not send, fetched
        text = (await client.get(gw.url + "/metrics")).text

    assert "窗口关了的问题" in (fetched.text or "")

    def metric(name: str, **labels: str) -> float | None:
        return value(text, name, channel="wechat_mp", **labels)

    assert metric("chatgate_deliveries_total", path="inline_try_1") == 1
    assert metric("chatgate_deliveries_total", path="push") == 1
    assert metric("chatgate_deliveries_total", path="fetch") == 1
    assert total(text, "chatgate_deliveries_total") == 3
    assert metric("chatgate_answers_deferred_total") == 0
    assert total(text, "chatgate_answers_lost_total") == 0
    assert value(text, "chatgate_platform_api_errors_total", platform="wechat_mp", code="45015")
    assert value(text, "chatgate_token_refreshes_total", platform="wechat_mp") == api.token_calls()
    assert api.token_calls() >= 1
    assert value(text, "chatgate_llm_calls_total", provider="openai") == 3


async def test_metrics_count_dingtalk_deliveries_webhook_errors_and_token_refreshes(
    llm: LLM,
) -> None:
    from tests.e2e.test_dingtalk import dingtalk

    async with dingtalk(llm, "stream") as dt, httpx.AsyncClient() as client:
        await dt.sim.send_text("u1", "你好 [delay=1]")
        await dt.sim.wait_shown("u1")
        await dt.sim.send_text("u2", "慢一点的问题 [delay=2]")
        dt.sim.expire_sessions("u2")  # the sessionWebhook answers 300001: the OpenAPI instead
        [shown] = await dt.sim.wait_shown("u2")
        text = (await client.get(dt.gw.url + "/metrics")).text

    assert shown.via == "openapi"

    def metric(name: str, **labels: str) -> float | None:
        return value(text, name, **labels)

    assert metric("chatgate_messages_received_total", channel="dingtalk", kind="text") == 2
    assert metric("chatgate_tries_total", channel="dingtalk", attempt="1") == 2
    assert metric("chatgate_deliveries_total", channel="dingtalk", path="push") == 2
    assert total(text, "chatgate_deliveries_total") == 2
    assert metric("chatgate_platform_api_errors_total", platform="dingtalk", code="300001") == 1
    assert metric("chatgate_token_refreshes_total", platform="dingtalk") == 1
    assert total(text, "chatgate_answers_lost_total") == 0
    assert value(text, "chatgate_llm_calls_total", provider="openai") == 2
