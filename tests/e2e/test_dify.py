"""The Dify provider end to end: WeChat user → gateway → the simulator's fake Dify app."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from chatgate.core.conversations import provider_state_key
from chatgate.sim.wechat import WeChatSim
from tests.e2e.conftest import LLM
from tests.e2e.harness import TOKEN, GatewayProcess, gateway_in_process

DIFY: dict[str, Any] = {"llm_provider": "dify", "llm_api_key": "app-sim-key"}
CONVERSATION = "wechat_mp:gh_sim:u1"


def dify_calls(llm: LLM) -> list[dict[str, Any]]:
    assert all(call.api == "dify" for call in llm.sim.calls)
    return [call.body for call in llm.sim.calls]


async def test_dify_keeps_the_context_across_turns_and_gets_only_the_new_question(
    llm: LLM,
) -> None:
    async with gateway_in_process(llm.url, **DIFY) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        first = await sim.send_text("u1", "我叫小明")
        second = await sim.send_text("u1", "我刚才说了什么？")
    assert first.text == "你问：我叫小明。这是模拟回答。"
    assert second.text == "你刚才说：我叫小明"
    calls = dify_calls(llm)
    assert [c["query"] for c in calls] == ["我叫小明", "我刚才说了什么？"]
    assert "conversation_id" not in calls[0]
    assert calls[1]["conversation_id"] in llm.sim.dify.conversations
    assert len(llm.sim.dify.conversations) == 1
    # The app sees a stable pseudonym, never the platform's user id.
    assert calls[0]["user"] == calls[1]["user"] and "u1" not in calls[0]["user"]


async def test_each_user_has_a_dify_conversation_of_their_own(llm: LLM) -> None:
    async with gateway_in_process(llm.url, **DIFY) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        await sim.send_text("alice", "我是爱丽丝")
        await sim.send_text("bob", "我是鲍勃")
        answer = await sim.send_text("alice", "我刚才说了什么？")
    assert answer.text == "你刚才说：我是爱丽丝"
    assert len(llm.sim.dify.conversations) == 2


@pytest.mark.parametrize("command", ["/new", "清除"])
async def test_new_starts_a_new_dify_conversation(llm: LLM, command: str) -> None:
    async with gateway_in_process(llm.url, **DIFY) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        await sim.send_text("u1", "我叫小明")
        reset = await sim.send_text("u1", command)
        after = await sim.send_text("u1", "我刚才说了什么？")
        kept = await gw.services.store.kv_get(provider_state_key(CONVERSATION))
    assert reset.text == gw.services.texts.context_reset
    assert after.text == "你之前没有说过别的话。"
    calls = dify_calls(llm)
    assert [c["query"] for c in calls] == ["我叫小明", "我刚才说了什么？"]  # /new is no call
    assert "conversation_id" not in calls[1]
    assert len(llm.sim.dify.conversations) == 2
    assert kept is not None and calls[1]["user"] == calls[0]["user"]


async def test_a_conversation_dify_lost_is_started_afresh_with_one_answer(llm: LLM) -> None:
    async with gateway_in_process(llm.url, **DIFY) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        await sim.send_text("u1", "第一句")
        llm.sim.dify.forget()  # deleted in Dify's console, say
        answer = await sim.send_text("u1", "第二句")
        again = await sim.send_text("u1", "我刚才说了什么？")
    assert answer.kind == "reply" and answer.text == "你问：第二句。这是模拟回答。"
    assert again.text == "你刚才说：第二句"
    queries = [c["query"] for c in dify_calls(llm)]
    assert queries == ["第一句", "第二句", "第二句", "我刚才说了什么？"]  # 404, then afresh


async def test_a_dify_error_reaches_the_user_as_the_apology(llm: LLM) -> None:
    apology = "抱歉，Dify 应用出错了。"
    async with gateway_in_process(llm.url, llm_apology=apology, **DIFY) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        outcome = await sim.send_text("u1", "坏问题 [fail=400]")
    assert outcome.kind == "reply" and outcome.text == apology
    assert len(llm.sim.calls) == 1  # a 400 is not retried


@pytest.mark.slow
async def test_dify_context_survives_a_gateway_restart_and_new_starts_over(
    llm: LLM, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'gw.db'}"
    async with GatewayProcess(llm.url, store=store, **DIFY) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        assert (await sim.send_text("u1", "我叫小明")).text == "你问：我叫小明。这是模拟回答。"
        assert await gw.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
        await gw.start()
        assert (await sim.send_text("u1", "我刚才说了什么？")).text == "你刚才说：我叫小明"
        await sim.send_text("u1", "/new")
        assert (await sim.send_text("u1", "我刚才说了什么？")).text == "你之前没有说过别的话。"
    calls = dify_calls(llm)
    first_conversation = calls[1]["conversation_id"]
    assert first_conversation in llm.sim.dify.conversations
    assert llm.sim.dify.conversations[first_conversation].queries == [
        "我叫小明",
        "我刚才说了什么？",
    ]
    assert "conversation_id" not in calls[2]
    assert len(llm.sim.dify.conversations) == 2


async def test_dify_answers_are_streamed_into_the_store_while_they_run(llm: LLM) -> None:
    async with gateway_in_process(llm.url, **DIFY) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        sending = asyncio.create_task(sim.send_text("u1", "长问题 [len=3000] [delay=3]"))
        store = gw.services.store
        partial = ""
        for _ in range(100):
            answers = await store.conversation_answers(CONVERSATION)
            if answers and answers[-1].text and not answers[-1].finished:
                partial = answers[-1].text
                break
            await asyncio.sleep(0.05)
        outcome = await sending
    assert partial and (outcome.text or "").startswith(partial[:20])
