"""Memory per pending answer and per stored conversation, measured with tracemalloc.

    python bench/memory.py [--pending 2000] [--conversations 10000]

Pending answers: the real services (``build_services``) accept messages from distinct users
while the model never answers, so every answer stays pending — its record, its job task
waiting for a model slot or streaming, the claims. Python's heap grows by what they hold.
Stored conversations: one exchange each (question, answer turns and the finished answer
record) written through the store; the in-memory store's heap growth, and SQLite's bytes on
disk (SQLite's page cache is fixed-size and not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row

from chatgate.app.wiring import build_services
from chatgate.config import load_settings
from chatgate.core.messages import Inbound, Kind
from chatgate.providers.base import ChatRequest
from chatgate.store import open_store
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus, Store, Turn

QUESTION = "请帮我写一段关于秋天的短文，大约一百字左右。"
ANSWER = "秋天是收获的季节。金黄的稻田、火红的枫叶和湛蓝的天空构成了一幅美丽的画卷。" * 2


class NeverAnswers:
    """A model that never produces a word: every answer stays pending."""

    name = "never"

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        await asyncio.Event().wait()
        yield ""  # pragma: no cover

    async def aclose(self) -> None:
        return None


def heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def pending_bytes(store_url: str, count: int) -> float:
    settings = load_settings(
        environ={}, store=store_url, wechat_token="benchtoken", llm_provider="fake"
    )
    services = build_services(settings, provider=NeverAnswers())
    await services.store.open()
    try:
        # One message first, so that first-use allocations are not counted.
        await services.dispatcher.accept(_message(-1))
        await asyncio.sleep(0.1)
        before = heap()
        for i in range(count):
            await services.dispatcher.accept(_message(i))
        await asyncio.sleep(0.5)  # every job reaches its wait
        grown = heap() - before
        assert services.jobs.active == count + 1, services.jobs.active
    finally:
        await services.supervisor.drain(0)
        await services.store.close()
    return grown / count


def _message(i: int) -> Inbound:
    user, msg_id = f"o_user_{i:06d}", f"{10**12 + i}"
    return Inbound("wechat_mp", "gh_bench", user, msg_id, Kind.TEXT, f"{QUESTION}（{i}）")


async def store_conversations(store: Store, count: int, first: int = 0) -> None:
    now = time.time()
    for i in range(first, first + count):
        conversation = f"wechat_mp:gh_bench:o_user_{i:06d}"
        # Distinct strings, as real questions and answers are (one shared object would
        # be counted once for all).
        question, answer = f"{QUESTION}（{i}）", f"{ANSWER}（{i}）"
        record = AnswerRecord(
            id=f"{i:032x}",
            conversation=conversation,
            dedup_key=f"{10**12 + i}",
            kind=AnswerKind.LLM,
            question=question,
            page_token=f"tok{i:019d}",
            status=AnswerStatus.DONE,
            text=answer,
            created_at=now,
            updated_at=now,
            finished_at=now,
            expires_at=now + 86400,
            delivered_upto=len(answer),
        )
        await store.create_answer(record)
        await store.append_turns(
            conversation,
            [Turn("user", question, now), Turn("assistant", answer, now, answer_id=record.id)],
        )


async def memory_store_bytes(count: int) -> float:
    store = open_store("memory://")
    await store.open()
    await store_conversations(store, 1, first=count)  # first-use allocations, not counted
    before = heap()
    await store_conversations(store, count)
    grown = heap() - before
    await store.close()
    return grown / count


async def sqlite_bytes(count: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        store = open_store(f"sqlite:///{path}")
        await store.open()
        await store.close()
        empty = _size(path)
        store = open_store(f"sqlite:///{path}")
        await store.open()
        await store_conversations(store, count)
        await store.close()
        return (_size(path) - empty) / count


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def measure(pending: int = 2000, conversations: int = 10_000) -> list[Row]:
    logging.disable(logging.WARNING)  # the services warn about settings a bench leaves unset
    tracemalloc.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sqlite_pending = await pending_bytes(f"sqlite:///{Path(tmp) / 'p.db'}", pending)
        memory_pending = await pending_bytes("memory://", pending)
        memory_conversation = await memory_store_bytes(conversations)
    finally:
        tracemalloc.stop()
    disk_conversation = await sqlite_bytes(conversations)
    bench = "memory"
    return [
        Row(
            bench,
            "per pending answer (SQLite store)",
            f"{sqlite_pending / 1024:.1f} KiB",
            f"Python heap, {pending} answers waiting on the model",
        ),
        Row(
            bench,
            "per pending answer (memory store)",
            f"{memory_pending / 1024:.1f} KiB",
            "the same, records held in the process",
        ),
        Row(
            bench,
            "per stored conversation (memory)",
            f"{memory_conversation / 1024:.1f} KiB",
            f"{conversations} conversations, one exchange + its answer record each",
        ),
        Row(
            bench,
            "per stored conversation (SQLite)",
            f"{disk_conversation / 1024:.1f} KiB on disk",
            f"the same {conversations}, file and WAL",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pending", type=int, default=2000)
    parser.add_argument("--conversations", type=int, default=10_000)
    args = parser.parse_args(argv)
    for row in asyncio.run(measure(args.pending, args.conversations)):
        print(f"{row.figure:<36} {row.value:>16}   {row.note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
