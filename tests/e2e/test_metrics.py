"""``/metrics`` after a simulated conversation: exactly the counts the conversation caused."""

from __future__ import annotations

import httpx
import pytest

from chatgate.sim.wechat import WeChatSim
from tests.app.support import total, value
from tests.e2e.conftest import LLM
from tests.e2e.harness import TOKEN, gateway_in_process
from tests.e2e.test_passive import post_raw

pytestmark = pytest.mark.slow


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
