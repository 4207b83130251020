"""SIGTERM on a real gateway process: drain, refuse new webhooks, lose nothing accepted."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from chatgate.sim.wechat import WeChatSim
from tests.e2e.conftest import LLM
from tests.e2e.harness import TOKEN, GatewayProcess

pytestmark = pytest.mark.slow


def expected(llm: LLM, *questions: str) -> str:
    return llm.sim.expected_answer([{"role": "user", "content": q} for q in questions])


async def until_called(llm: LLM, calls: int = 1) -> None:
    for _ in range(200):
        if len(llm.sim.calls) >= calls:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the model was never called")


async def test_an_answer_cut_by_sigterm_is_delivered_after_the_restart(
    llm: LLM, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'gw.db'}"
    question = "被关机打断的问题 [delay=8]"
    async with GatewayProcess(llm.url, store=store, shutdown_grace=1) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        pending = asyncio.create_task(sim.send_text("u1", question))
        await until_called(llm)
        # One second of grace is not enough for an 8 s answer: the job is left for next time.
        assert await gw.stop(signal.SIGTERM) == 0
        cut = await pending
        assert cut.kind == "error"  # what WeChat showed while the gateway was away
        await gw.start()
        fetched = await sim.send_text("u1", "1")
    assert fetched.kind == "reply"
    assert fetched.text == expected(llm, question)
    # The cancelled call never finished, so the resumed job asked again — once.
    assert llm.questions() == [question, question]


async def test_sigterm_refuses_new_webhooks_and_lets_a_running_answer_finish(
    llm: LLM, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'gw.db'}"
    question = "快答完的问题 [delay=3]"
    async with GatewayProcess(llm.url, store=store, shutdown_grace=20) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        pending = asyncio.create_task(sim.send_text("u1", question))
        await until_called(llm)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                ready = await client.get(gw.url + "/readyz")
                if ready.status_code == 503:
                    break
                await asyncio.sleep(0.05)
            alive = await client.get(gw.url + "/healthz")
            refused = await client.post(gw.wechat_url, content=b"<xml/>")
        late = await WeChatSim(gw.wechat_url, TOKEN).send_text("u2", "关机时发来的问题")
        answered = await pending
        async with asyncio.timeout(30):
            code = await gw.proc.wait()
        gw.proc = None

    assert ready.status_code == 503 and ready.json() == {"status": "draining"}
    assert alive.status_code == 200
    assert refused.status_code == 503 and refused.headers["retry-after"].isdigit()
    assert late.kind == "error" and late.raw[0].status == 503
    # The try that was waiting when the signal came still got its answer, inline.
    assert answered.kind == "reply" and answered.tries == 1
    assert answered.text == expected(llm, question)
    assert code == 0
    assert llm.questions() == [question]  # the refused message never reached the model
