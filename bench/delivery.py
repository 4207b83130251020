"""Delivery of a latency mix: simulated WeChat users with WeChat's real timing, concurrently.

    python bench/delivery.py [--messages 200] [--users 50] [--seed 8]

A real gateway process (passive mode, SQLite store: the default deployment; the model
concurrency cap raised to the number of users) answers from the fake LLM, whose answers take
a mix of times: most fit the first try's window, some need WeChat's retries, some miss all
three tries. Each simulated user sends their messages one after another and waits to see each
answer: inline, or — after the placeholder — by replying 「1」 a few seconds later, again
while it is still being written. Reported: answers seen and lost,
model calls per message, the share seen inline, and the time from sending a message to seeing
its answer (p50, p99), checked against the gateway's own /metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row, gateway_process, percentile
from prometheus_client.parser import text_string_to_metric_families

from chatgate.sim.llm import FakeLLM
from chatgate.sim.wechat import WeChatSim

TOKEN = "benchtoken2026"
# (share, shortest, longest answer time in seconds): what the mix is made of.
MIX = (
    (0.55, 0.3, 3.5),  # fits the first try (4.5 s)
    (0.25, 5.5, 13.0),  # inline on the second or third try
    (0.20, 16.0, 32.0),  # misses every try: placeholder, then 「1」
)
FETCH_AFTER = 5.0  # a user who got the placeholder replies 「1」 this much later
MAX_FETCHES = 8


@dataclass(frozen=True)
class Question:
    user: str
    marker: str
    delay: float

    @property
    def text(self) -> str:
        return f"{self.marker}怎么样？[delay={self.delay:.1f}]"


@dataclass(frozen=True)
class Seen:
    question: Question
    path: str | None  # inline_try_N or fetch; None: never seen
    seconds: float
    fetches: int


def questions(messages: int, users: int, rng: random.Random) -> list[Question]:
    out = []
    for i in range(messages):
        draw, pick = rng.random(), MIX[-1]
        for share, low, high in MIX:
            if draw < share:
                pick = (share, low, high)
                break
            draw -= share
        out.append(Question(f"o_user_{i % users:03d}", f"问题{i:03d}号", rng.uniform(*pick[1:])))
    return out


async def one_user(sim: WeChatSim, mine: list[Question], results: list[Seen]) -> None:
    loop = asyncio.get_running_loop()
    for question in mine:
        started = loop.time()
        outcome = await sim.send_text(question.user, question.text)
        path = None
        if outcome.kind == "reply" and question.marker in (outcome.text or ""):
            path = f"inline_try_{outcome.tries}"
        fetches = 0
        while path is None and fetches < MAX_FETCHES:
            await asyncio.sleep(FETCH_AFTER)
            fetched = await sim.send_text(question.user, "1")
            fetches += 1
            if fetched.kind == "reply" and question.marker in (fetched.text or ""):
                path = "fetch"
        results.append(Seen(question, path, loop.time() - started, fetches))


def metric_totals(text: str) -> dict[tuple[str, str], float]:
    """Sample values by (name, the label that matters): path, reason or provider."""
    out: dict[tuple[str, str], float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            key = labels.get("path") or labels.get("reason") or labels.get("provider") or ""
            out[(sample.name, key)] += sample.value
    return out


async def measure(messages: int = 200, users: int = 50, seed: int = 8) -> list[Row]:
    rng = random.Random(seed)
    plan = questions(messages, users, rng)
    llm = FakeLLM()
    results: list[Seen] = []
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as tmp:
        async with llm.serve() as llm_url:
            settings = {
                "CHATGATE_STORE": f"sqlite:///{Path(tmp) / 'bench.db'}",
                "CHATGATE_LLM_BASE_URL": llm_url,
                "CHATGATE_LLM_MODEL": "sim-llm",
                "CHATGATE_WECHAT_TOKEN": TOKEN,
                "CHATGATE_LOG_LEVEL": "warning",
                # Room for every user's call at once: this measures delivery, not the cap a
                # deployment sets to its model's rate limit (8 by default, which 50 users
                # with 10-30 s answers would saturate).
                "CHATGATE_LLM_CONCURRENCY": str(max(8, users)),
            }
            async with gateway_process(settings) as url, httpx.AsyncClient() as client:
                sim = WeChatSim(url + "/wechat", TOKEN, client=client)
                by_user: dict[str, list[Question]] = {}
                for question in plan:
                    by_user.setdefault(question.user, []).append(question)
                started = loop.time()
                await asyncio.gather(*(one_user(sim, mine, results) for mine in by_user.values()))
                wall = loop.time() - started
                metrics = metric_totals((await client.get(url + "/metrics")).text)

    seen = [r for r in results if r.path is not None]
    paths = Counter(r.path for r in seen)
    inline = sum(n for path, n in paths.items() if path and path.startswith("inline"))
    times = [r.seconds for r in seen]
    calls = len(llm.calls)
    lost_metric = sum(
        v for (name, _), v in metrics.items() if name == "chatgate_answers_lost_total"
    )
    delivered_metric = sum(
        v for (name, _), v in metrics.items() if name == "chatgate_deliveries_total"
    )
    by_path = ", ".join(f"{path} {n}" for path, n in sorted(paths.items()))
    bench = f"delivery mix ({messages} messages, {users} users)"
    return [
        Row(bench, "answers seen", f"{len(seen)} / {messages}", by_path),
        Row(
            bench,
            "answers lost",
            f"{messages - len(seen)}",
            f"/metrics chatgate_answers_lost_total {lost_metric:g}, "
            f"deliveries counted {delivered_metric:g}",
        ),
        Row(bench, "LLM calls per message", f"{calls / messages:.2f}", f"{calls} calls"),
        Row(bench, "seen inline (no 「1」)", f"{inline / messages:.0%}", "the rest by 「1」"),
        Row(bench, "time to see the answer p50", f"{percentile(times, 50):.1f} s"),
        Row(
            bench,
            "time to see the answer p99",
            f"{percentile(times, 99):.1f} s",
            f"answers took 0.3-32 s; wall time {wall:.0f} s",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args(argv)
    for row in asyncio.run(measure(args.messages, args.users, args.seed)):
        print(f"{row.figure:<32} {row.value:>12}   {row.note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
