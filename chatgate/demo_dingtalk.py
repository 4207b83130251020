"""``chatgate demo --channel dingtalk``: the DingTalk loop offline, as each chat shows it.

A simulated DingTalk, the gateway in Stream mode and a fake LLM, all on loopback, in two
rounds: markdown replies (through the sessionWebhook while it is valid, the OpenAPI after it
expired; a group @-mention; a message DingTalk delivers three times), then the typewriter
effect, the answer streamed into an AI card at most once a second.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

from chatgate.app.asgi import build_app
from chatgate.config import load_settings
from chatgate.sim.dingtalk import DingTalkSim, Shown
from chatgate.sim.llm import FakeLLM
from chatgate.sim.server import LoopbackServer

TEMPLATE = "demo-ai-card.schema"
GROUP = "cidDemoGroup0001"
USER = "manager0001"
COLLEAGUE = "staff0002"
_VIA = {"webhook": "sessionWebhook", "openapi": "OpenAPI", "card": "AI card"}


def _clip(text: str, width: int = 58) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


@asynccontextmanager
async def _gateway(sim: DingTalkSim, llm_url: str, db: Path, **extra: Any) -> AsyncIterator[None]:
    settings = load_settings(
        environ={},
        store=f"sqlite:///{db}",
        llm_provider="openai",
        llm_base_url=llm_url,
        llm_model="sim-llm",
        log_level="warning",
        dingtalk_client_id=sim.client_id,
        dingtalk_client_secret=sim.client_secret,
        dingtalk_api_base=sim.api_base,
        dingtalk_mode="stream",
        **extra,
    )
    connections = sim.gateway.opened + 1
    async with LoopbackServer(build_app(settings)):
        await sim.gateway.wait_connections(connections)
        yield


async def run_dingtalk_demo(out: TextIO | None = None) -> int:
    """Run the scripted conversations; returns 0 when each question cost one LLM call."""
    sink = sys.stdout if out is None else out
    # No WeChat account and no public URL, on purpose: their start-up warnings are noise here.
    wiring = logging.getLogger("chatgate.app.wiring")
    level = wiring.level
    wiring.setLevel(logging.ERROR)
    try:
        return await _run(sink)
    finally:
        wiring.setLevel(level)


async def _run(sink: TextIO) -> int:
    started = time.monotonic()

    def say(line: str = "") -> None:
        print(line, file=sink, flush=True)

    def stamp() -> str:
        return f"[{time.monotonic() - started:5.1f}s]"

    def show(shown: Shown, who: str = "机器人") -> None:
        say(f"         {who} ({_VIA[shown.via]}): {_clip(shown.current)}")

    llm = FakeLLM()
    sim = DingTalkSim(card_templates={TEMPLATE: "content"})
    questions = 0

    async def ask(
        user: str, text: str, note: str, *, group: str | None = None, **options: Any
    ) -> None:
        nonlocal questions
        where = f"群「{group}」" if group else "单聊"
        say(f"\n{stamp()} {user} @{where}: {text.split(' [')[0]}")
        say(f"         ({note})")
        await sim.send_text(user, text, group=group, **options)
        questions += 1

    with tempfile.TemporaryDirectory(prefix="chatgate-demo-") as tmp:
        async with llm.serve() as llm_url, sim.serve():
            say("chatgate demo (DingTalk): a simulated DingTalk talks to the gateway on loopback.")
            say(f"Stream mode: a WebSocket to the fake DingTalk at {sim.api_base}; replies go")
            say("back through sessionWebhooks or the OpenAPI. This takes about 20 seconds.")
            say("\n== Round 1: markdown replies ==")
            async with _gateway(sim, llm_url, Path(tmp) / "round1.db"):
                await ask(USER, "你好，请介绍一下你自己 [delay=1]", "a quick answer")
                show((await sim.wait_shown(USER, 1))[-1])

                await ask(
                    COLLEAGUE,
                    "今天的周会几点开始？ [delay=1]",
                    "in a group: only @-mentions reach the robot; the mention is stripped",
                    group=GROUP,
                    mention_text=True,
                )
                show((await sim.wait_shown(GROUP, 1))[-1])

                await ask(
                    USER,
                    "帮我总结一下项目进度 [delay=2]",
                    "DingTalk delivers this message three times, as after a slow ack",
                    redeliver=2,
                )
                show((await sim.wait_shown(USER, 2))[-1])

                await ask(USER, "写一份详细的周报提纲 [delay=3]", "a slower answer")
                sim.expire_sessions(USER)
                say("         (meanwhile DingTalk ends the session: its webhook answers 300001)")
                show((await sim.wait_shown(USER, 3))[-1])

            say("\n== Round 2: the typewriter effect, streamed into an AI card ==")
            card_settings = {"dingtalk_card_template": TEMPLATE, "dingtalk_stream_interval": 1.0}
            async with _gateway(sim, llm_url, Path(tmp) / "round2.db", **card_settings):
                await ask(
                    USER,
                    "详细讲讲量子计算的原理和应用 [delay=6] [len=1500]",
                    "a 6 s answer: the card grows at most once a second",
                )
                await _follow_card(sim, USER, 4, say, stamp)

        calls = len(llm.calls)
        api = sim.api_calls()
        say(
            f"\nLLM calls: {calls} for {questions} questions "
            f"({'one per question' if calls == questions else 'MISMATCH'}), "
            "whatever DingTalk redelivered."
        )
        say("OpenAPI calls (quota-counted): " + ", ".join(f"{n} {p}" for p, n in api.items()))
        return 0 if calls == questions else 1


async def _follow_card(
    sim: DingTalkSim,
    chat: str,
    index: int,
    say: Callable[[str], None],
    stamp: Callable[[], str],
) -> None:
    """Print each update of the chat's ``index``-th message (a card) as DingTalk receives it."""
    await sim.wait_shown(chat, index)
    card = sim.shown(chat)[index - 1].card
    assert card is not None
    say(f"{stamp()} AI card delivered (处理中)")
    seen = 0

    def more(after: int) -> Callable[[], bool]:
        return lambda: len(card.updates) > after

    while True:
        await sim.wait_until(more(seen), within=60)
        for update in card.updates[seen:]:
            state = "完成" if update.is_finalize else "输入中"
            seen += 1
            say(f"{stamp()} card update {seen}: {len(update.shown):4d} chars ({state})")
            if update.is_finalize:
                say(f"         机器人 (AI card): {_clip(card.content)}")
                return
