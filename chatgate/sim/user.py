"""A WeChat user at a terminal: each line typed is sent, and what WeChat would show is printed."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from chatgate.sim.wechat import Outcome, WeChatSim

HELP = (
    "Type a message and press Enter. Lines starting with ! are not text:\n"
    "  !voice <recognised text>   a voice message\n"
    "  !event <Event> [EventKey]  an event, e.g. !event subscribe, !event CLICK menu_1\n"
    "End with Ctrl-D."
)


def describe(outcome: Outcome) -> str:
    """What the user sees, then how long it took and how many tries WeChat made."""
    plural = "try" if outcome.tries == 1 else "tries"
    timing = f"({outcome.elapsed:.1f} s, {outcome.tries} {plural})"
    if outcome.kind == "nothing":
        return f"(no reply) {timing}"
    shown = outcome.text or ""
    if outcome.kind == "error":
        return f"{shown} {timing}\n  [why: {outcome.reason}]"
    return f"{shown}\n{timing}"


async def send_line(sim: WeChatSim, user: str, line: str) -> Outcome:
    """Send one typed line: plain text, or a `!voice` / `!event` command."""
    command, _, rest = line.partition(" ")
    if command == "!voice":
        fields = {"MediaId": "sim_voice", "Format": "amr", "Recognition": rest}
        return await sim.send_message(user, "voice", fields)
    if command == "!event" and rest:
        event, _, key = rest.partition(" ")
        return await sim.send_event(user, event, key or None)
    return await sim.send_text(user, line)


async def run_terminal_user(
    sim: WeChatSim,
    user: str,
    input: TextIO | None = None,
    output: TextIO | None = None,
) -> None:
    """Read lines until end of input; print each reply as the WeChat user would see it."""
    source = sys.stdin if input is None else input
    sink = sys.stdout if output is None else output
    print(f"Talking to {sim.url} as {user}. {HELP}", file=sink, flush=True)
    while True:
        print("> ", end="", file=sink, flush=True)
        # A blocking read in a thread keeps the event loop (and any in-process gateway) running.
        line = await asyncio.to_thread(source.readline)
        if not line:
            print(file=sink)
            return
        line = line.strip()
        if not line:
            continue
        outcome = await send_line(sim, user, line)
        print(describe(outcome), file=sink, flush=True)
