"""``chatgate demo``: the whole loop offline — a simulated WeChat user, the gateway, a fake LLM.

Everything runs on loopback in one process with WeChat's real timing (5 s per try, 3 tries),
so the output shows exactly what a user of a passive (unverified) account would see.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from chatgate.app.asgi import build_app
from chatgate.config import load_settings
from chatgate.sim.llm import FakeLLM, Script, ScriptHook
from chatgate.sim.llm_script import plan, user_texts
from chatgate.sim.server import LoopbackServer
from chatgate.sim.user import describe
from chatgate.sim.wechat import WeChatSim

TOKEN = "chatgate-demo"
USER = "o_demo_user"


@dataclass(frozen=True)
class Step:
    say: str
    note: str
    directives: str = ""  # how the fake LLM behaves for this question
    wait_before: float = 0.0


STEPS = (
    Step("你好，请介绍一下你自己", "a fast answer (1 s): inline on the 1st try", "[delay=1]"),
    Step(
        "写一首关于秋天的短诗", "a 9 s answer: WeChat retries, inline on the 2nd try", "[delay=9]"
    ),
    Step(
        "详细讲讲量子计算的原理和应用",
        "a 25 s, 3000-byte answer: the 3rd try gets the placeholder",
        "[delay=25] [len=3000]",
    ),
    Step("1", "reply 「1」 once the answer is ready: its first part", wait_before=11.0),
    Step("1", "「1」 again: the next part"),
    Step("我刚才问了什么？", "a follow-up: the model saw the earlier turns", "[delay=1]"),
)


def _clip(line: str, width: int = 60) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


def _scripted(directives: dict[str, str]) -> ScriptHook:
    """Steer the fake LLM per question without showing the directives to the user."""

    def script(messages: list[dict[str, Any]]) -> Script:
        users = user_texts(messages)
        extra = directives.get(users[-1], "") if users else ""
        if not extra:
            return plan(messages)
        steered = [*messages[:-1], {**messages[-1], "content": f"{users[-1]} {extra}"}]
        return plan(steered)

    return script


async def run_demo(out: TextIO | None = None) -> int:
    """Run the scripted conversation; returns 0 when each question cost one LLM call."""
    sink = sys.stdout if out is None else out

    def say(line: str = "") -> None:
        print(line, file=sink, flush=True)

    llm = FakeLLM(script=_scripted({s.say: s.directives for s in STEPS if s.directives}))
    with tempfile.TemporaryDirectory(prefix="chatgate-demo-") as tmp:
        async with llm.serve() as llm_url:
            settings = load_settings(
                environ={},
                store=f"sqlite:///{Path(tmp) / 'demo.db'}",
                llm_provider="openai",
                llm_base_url=llm_url,
                llm_model="sim-llm",
                wechat_token=TOKEN,
                log_level="warning",
            )
            async with LoopbackServer(build_app(settings)) as gateway:
                url = f"{gateway.url}{settings.wechat_path}"
                say("chatgate demo: a simulated WeChat user talks to the gateway over loopback.")
                say(f"Gateway {url} (passive mode, SQLite store); fake LLM {llm_url}.")
                say("WeChat's real timing: 5 s per try, 3 tries. This takes about a minute.")
                sim = WeChatSim(url, TOKEN, account="gh_demo")
                started = time.monotonic()
                questions = 0
                for step in STEPS:
                    if step.wait_before:
                        say(f"\n… the user waits {step.wait_before:g} s …")
                        await asyncio.sleep(step.wait_before)
                    say(f"\n[{time.monotonic() - started:5.1f}s] 用户: {step.say}")
                    say(f"         ({step.note})")
                    outcome = await sim.send_text(USER, step.say)
                    for n, line in enumerate(describe(outcome).splitlines()):
                        if line:
                            say(f"         {'公众号: ' if n == 0 else '        '}{_clip(line)}")
                    if step.say != "1":
                        questions += 1
                calls = len(llm.calls)
                say(
                    f"\nLLM calls: {calls} for {questions} questions "
                    f"({'one per question' if calls == questions else 'MISMATCH'}), "
                    f"whatever WeChat retried."
                )
                return 0 if calls == questions else 1
