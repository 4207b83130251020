"""Provider robustness and the answer cache end to end, through WeChat and the fake LLM."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from chatgate.sim.wechat import WeChatSim
from tests.e2e.conftest import LLM
from tests.e2e.harness import TOKEN, gateway_in_process

PROVIDERS: dict[str, dict[str, Any]] = {
    "openai": {},
    "dify": {"llm_provider": "dify", "llm_api_key": "app-sim-key"},
}


def expected(llm: LLM, question: str) -> str:
    return llm.sim.expected_answer([{"role": "user", "content": question}])


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_429_then_success_shows_exactly_one_answer_and_no_apology(
    llm: LLM, provider: str
) -> None:
    question = "限流问题 [fail=429x1]"
    async with gateway_in_process(llm.url, **PROVIDERS[provider]) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        outcome = await sim.send_text("u1", question)
        pending = await sim.send_text("u1", "1")
    assert outcome.kind == "reply" and outcome.tries == 1
    assert outcome.text == expected(llm, question)
    assert gw.settings.llm_apology not in (outcome.text or "")
    assert pending.text == gw.services.texts.nothing_pending  # nothing else waits
    assert [c.question for c in llm.sim.calls] == [question, question]


async def test_a_lasting_failure_is_retried_as_configured_then_apologised_for(
    llm: LLM, caplog: pytest.LogCaptureFixture
) -> None:
    apology = "模型开小差了，请稍后再问。"
    question = "总是失败 [fail=503]"
    with caplog.at_level(logging.WARNING):
        async with gateway_in_process(llm.url, llm_retries=1, llm_apology=apology) as gw:
            sim = WeChatSim(gw.wechat_url, TOKEN)
            outcome = await sim.send_text("u1", question)
            answers = await gw.services.store.conversation_answers("wechat_mp:gh_sim:u1")
    assert outcome.kind == "reply" and outcome.text == apology
    assert len(llm.sim.calls) == 2  # the call and CHATGATE_LLM_RETRIES=1 retry
    # Both the retry and the failure are logged with the answer's id; the failure also
    # with the platform's message id, which the dispatcher maps to that answer.
    answer = answers[-1]
    logged = [r.getMessage() for r in caplog.records if answer.id in r.getMessage()]
    assert any("retry 1/1" in line for line in logged)
    assert any("failed" in line and answer.dedup_key in line for line in logged)


async def test_retries_off_means_one_call(llm: LLM) -> None:
    async with gateway_in_process(llm.url, llm_retries=0) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        outcome = await sim.send_text("u1", "一次 [fail=429x1]")
    assert outcome.text == gw.settings.llm_apology
    assert len(llm.sim.calls) == 1


async def test_a_cache_hit_answers_another_user_without_an_llm_call(llm: LLM) -> None:
    async with gateway_in_process(llm.url, cache_ttl=600) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        first = await sim.send_text("alice", "天空为什么是蓝的？")
        second = await sim.send_text("bob", "  天空为什么是蓝的?")
        third = await sim.send_text("carol", "ＷＨＹ is the sky BLUE")
        fourth = await sim.send_text("dave", "why is the sky blue")
    assert first.text == second.text == expected(llm, "天空为什么是蓝的？")
    assert third.text == fourth.text
    assert [c.question for c in llm.sim.calls] == ["天空为什么是蓝的？", "ＷＨＹ is the sky BLUE"]


async def test_without_a_cache_ttl_every_question_calls_the_llm(llm: LLM) -> None:
    async with gateway_in_process(llm.url) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        await sim.send_text("alice", "同一个问题")
        await sim.send_text("bob", "同一个问题")
    assert len(llm.sim.calls) == 2


async def test_a_follow_up_question_is_never_answered_from_the_cache(llm: LLM) -> None:
    async with gateway_in_process(llm.url, cache_ttl=600) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        await sim.send_text("alice", "你好")
        await sim.send_text("bob", "先说点别的")
        follow = await sim.send_text("bob", "你好")
    assert follow.kind == "reply"
    assert [c.question for c in llm.sim.calls] == ["你好", "先说点别的", "你好"]
