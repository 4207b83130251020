"""Answer jobs wait their turn behind acknowledgements as queue entries, not as tasks."""

from __future__ import annotations

import asyncio
import gc
import sys

from chatgate.core.dispatcher import Ticket
from chatgate.core.messages import Inbound, Kind
from chatgate.core.precedence import Precedence
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus
from chatgate.store.memory import MemoryStore
from tests.core.conftest import ScriptedProvider, build_core


def msg(text: str, n: int) -> Inbound:
    return Inbound("wechat_mp", "gh_a", f"user-{n}", f"msg:{n}", Kind.TEXT, text=text)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def statuses(store: MemoryStore, tickets: list[Ticket]) -> list[AnswerStatus]:
    records = [await store.get_answer(t.answer.id) for t in tickets]
    return [r.status for r in records if r is not None]


class Ticks:
    """The releaser's sleep: returns when the test ticks."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[None] = asyncio.Queue()

    async def __call__(self, seconds: float) -> None:
        await self._queue.get()

    def tick(self) -> None:
        self._queue.put_nowait(None)


async def test_a_job_waiting_its_turn_is_no_task_yet_and_counts_as_active(
    store: MemoryStore, provider: ScriptedProvider
) -> None:
    ticks = Ticks()
    # Any lateness counts: the loop is loaded while messages arrived in the last minute.
    precedence = Precedence(busy_lag=0.0, recent=60.0, sleep=ticks)
    core = build_core(store, provider, precedence=precedence)
    precedence.arrived()
    tickets = [await core.dispatcher.accept(msg(q, n)) for n, q in enumerate("一二三")]
    await settle()
    # The releaser lets the oldest through at once; the others wait without a task.
    assert await statuses(store, tickets) == [AnswerStatus.DONE] + [AnswerStatus.QUEUED] * 2
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert not names & {f"answer:{t.answer.id}" for t in tickets}
    assert precedence.waiting == 2
    assert core.jobs.active == 2
    core.jobs.start(tickets[2].answer)  # started again (a recovery, say): still one job
    assert precedence.waiting == 2
    for _ in range(2):
        ticks.tick()
        await settle()
    assert await statuses(store, tickets) == [AnswerStatus.DONE] * 3
    assert provider.questions() == ["一", "二", "三"]
    assert core.jobs.active == 0
    await precedence.aclose()
    await core.supervisor.drain(1.0)


async def test_jobs_held_back_keep_neither_their_records_nor_much_else_for_the_collector(
    store: MemoryStore, provider: ScriptedProvider
) -> None:
    # A burst holds thousands of jobs back, and each young collection walks every object they
    # keep alive, and every field of each, while the acknowledgements in flight wait: the
    # answer's names in a queue (a tuple of strings, untracked once collected), no record,
    # partial, bound method or tuple of them.
    precedence = Precedence(busy_lag=0.0, recent=60.0, sleep=Ticks())
    core = build_core(store, provider, precedence=precedence)
    precedence.arrived()
    records = [
        AnswerRecord(
            id=f"a{n}",
            conversation=f"wechat_mp:gh_a:user-{n}",
            dedup_key=f"msg:{n}",
            kind=AnswerKind.LLM,
            question="q",
            page_token=f"p{n}",
        )
        for n in range(201)
    ]
    core.jobs.start(records[0])  # the first to wait starts the releaser, once
    gc.collect()
    before = len(gc.get_objects())
    references = [sys.getrefcount(record) for record in records[1:]]
    for n in range(1, len(records)):  # no loop variable left to hold the last record
        core.jobs.start(records[n])
    gc.collect()
    assert precedence.waiting == 201
    assert len(gc.get_objects()) - before <= 10  # nothing per job: 200 would be one apiece
    assert [sys.getrefcount(record) for record in records[1:]] == references
    precedence.release_all()
    await precedence.aclose()
    await core.supervisor.drain(1.0)
