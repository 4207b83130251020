"""Durability end to end: a real gateway process restarted, or killed mid-answer, loses nothing."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from chatgate.sim.wechat import WeChatSim
from tests.e2e.conftest import LLM
from tests.e2e.harness import TOKEN, GatewayProcess

pytestmark = pytest.mark.slow


def expected(llm: LLM, *questions: str) -> str:
    return llm.sim.expected_answer([{"role": "user", "content": q} for q in questions])


async def test_conversation_and_unread_answer_survive_a_restart(llm: LLM, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'gw.db'}"
    first_q = "第一个问题"
    slow_q = "慢问题 [delay=16]"
    async with GatewayProcess(llm.url, store=store) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        assert (await sim.send_text("u1", first_q)).text == expected(llm, first_q)
        placeholder = await sim.send_text("u1", slow_q)
        assert "回复「1」" in (placeholder.text or "")
        # The answer finishes ~1.5 s after the placeholder; stop once it is stored, unread.
        # (Were it still running, SIGTERM's drain would let it finish before exit.)
        await asyncio.sleep(3)
        # uvicorn re-raises SIGTERM after a clean shutdown, so the exit status names it.
        assert await gw.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
        await gw.start()
        fetched = await sim.send_text("u1", "1")
        assert fetched.text == expected(llm, first_q, slow_q)
        follow = "我刚才问了什么？"
        answered = await sim.send_text("u1", follow)
        assert answered.text == expected(llm, first_q, slow_q, follow)
        assert "慢问题" in (answered.text or "")
    assert llm.questions() == [first_q, slow_q, follow]


async def test_a_job_running_when_the_process_is_killed_is_answered_after_restart(
    llm: LLM, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'gw.db'}"
    question = "被打断的问题 [delay=8]"
    async with GatewayProcess(llm.url, store=store) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        pending = asyncio.create_task(sim.send_text("u1", question))
        for _ in range(100):
            if llm.sim.calls:
                break
            await asyncio.sleep(0.05)
        assert llm.questions() == [question]  # the job is running
        await gw.stop(signal.SIGKILL)
        lost_try = await pending
        assert lost_try.kind == "error"  # what WeChat showed while the server was down
        await gw.start()
        fetched = await sim.send_text("u1", "1")
    assert fetched.kind == "reply"
    assert fetched.text == expected(llm, question)
    # The killed call's answer never reached the store, so the recovered job asked again.
    assert llm.questions() == [question, question]
