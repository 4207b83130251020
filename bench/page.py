"""Answer-page first byte while answers stream.

    python bench/page.py [--answers 20] [--rounds 5]

A gateway process (SQLite store, passive mode) is writing ``--answers`` answers at once, each
streamed by the fake LLM over 30 s. Meanwhile each answer's page is opened ``--rounds`` times:
the time to the first byte of the HTML page, and to the first server-sent event of its live
stream (the partial answer so far), are measured from this process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row, gateway_process, percentile

from chatgate.sim.llm import FakeLLM
from chatgate.sim.wechat import WeChatSim

TOKEN = "benchtoken2026"


def streaming_tokens(db: Path) -> list[str]:
    """Page tokens of the answers being written now (read-only look at the gateway's store)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT page_token FROM answers WHERE status = 'running' AND text != ''"
        ).fetchall()
    return [str(row[0]) for row in rows]


async def first_byte(client: httpx.AsyncClient, url: str) -> float:
    started = time.perf_counter()
    async with client.stream("GET", url) as response:
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            if chunk:
                break
    return time.perf_counter() - started


async def measure(answers: int = 20, rounds: int = 5) -> list[Row]:
    llm = FakeLLM()
    pages: list[float] = []
    events: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        async with llm.serve() as llm_url:
            settings = {
                "CHATGATE_STORE": f"sqlite:///{db}",
                "CHATGATE_LLM_BASE_URL": llm_url,
                "CHATGATE_LLM_MODEL": "sim-llm",
                "CHATGATE_WECHAT_TOKEN": TOKEN,
                "CHATGATE_PUBLIC_URL": "https://bot.example.com",
                "CHATGATE_LOG_LEVEL": "warning",
                "CHATGATE_LLM_CONCURRENCY": str(max(8, answers)),  # all of them streaming
            }
            async with gateway_process(settings) as url, httpx.AsyncClient() as client:
                sim = WeChatSim(url + "/wechat", TOKEN)
                senders = [
                    asyncio.create_task(sim.send_text(f"o_page_{i:03d}", f"长问题{i}[delay=30]"))
                    for i in range(answers)
                ]
                try:
                    tokens: list[str] = []
                    for _ in range(300):
                        tokens = streaming_tokens(db)
                        if len(tokens) >= answers:
                            break
                        await asyncio.sleep(0.1)
                    for _ in range(rounds):
                        for token in tokens:
                            pages.append(await first_byte(client, f"{url}/a/{token}"))
                            events.append(await first_byte(client, f"{url}/a/{token}/events"))
                finally:
                    for sender in senders:
                        sender.cancel()
                    await asyncio.gather(*senders, return_exceptions=True)
    bench = f"answer page ({answers} answers streaming)"
    note = f"{len(pages)} opens, loopback"
    return [
        Row(bench, "first byte of the page p50", f"{percentile(pages, 50) * 1000:.1f} ms", note),
        Row(bench, "first byte of the page p99", f"{percentile(pages, 99) * 1000:.1f} ms"),
        Row(bench, "first live event p50", f"{percentile(events, 50) * 1000:.1f} ms", "SSE"),
        Row(bench, "first live event p99", f"{percentile(events, 99) * 1000:.1f} ms"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    for row in asyncio.run(measure(args.answers, args.rounds)):
        print(f"{row.figure:<30} {row.value:>10}   {row.note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
