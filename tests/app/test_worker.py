"""Stream workers on a real Redis, in this process: order, take-over, settle before acknowledge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from chatgate.app import worker as worker_module
from chatgate.app.worker import StreamWorker
from chatgate.core.conversations import Conversations
from chatgate.core.dispatcher import Dispatcher
from chatgate.core.jobs import AnswerJobs
from chatgate.core.messages import Inbound, Kind
from chatgate.core.router import Router
from chatgate.core.routes import default_router
from chatgate.core.tasks import TaskSupervisor
from chatgate.core.texts import Texts
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus
from chatgate.store.redis import RedisStore
from chatgate.store.redis_queue import JobStream, RedisJobQueue
from tests.core.conftest import Script, ScriptedProvider

WITHIN = 10.0


def msg(text: str, n: int, user: str = "u1") -> Inbound:
    return Inbound("wechat_mp", "gh_a", user, f"msg:{n}", Kind.TEXT, text=text)


@dataclass
class Cluster:
    """A web side (dispatcher) and stream workers, each on its own store object."""

    url: str
    prefix: str
    provider: ScriptedProvider = field(default_factory=ScriptedProvider)
    stores: list[RedisStore] = field(default_factory=list)
    workers: list[StreamWorker] = field(default_factory=list)
    supervisors: list[TaskSupervisor] = field(default_factory=list)
    loops: list[asyncio.Task[None]] = field(default_factory=list)

    async def store(self) -> RedisStore:
        store = RedisStore(self.url, prefix=self.prefix, poll_interval=0.05)
        await store.open()
        self.stores.append(store)
        return store

    async def web(self, claim_after: float = 1.0) -> tuple[Dispatcher, RedisStore]:
        store = await self.store()
        queue = RedisJobQueue(store, retention=3600, claim_after=claim_after)
        root = Router()
        root.include(default_router(Texts()))
        return Dispatcher(store, root, queue, answer_ttl=3600), store

    async def worker(
        self,
        *,
        capacity: int = 8,
        claim_after: float = 1.0,
        settle: list[Callable[[AnswerRecord], Awaitable[None]]] | None = None,
    ) -> StreamWorker:
        store = await self.store()
        supervisor = TaskSupervisor(capacity)
        conversations = Conversations(store, system_prompt="sys", max_turns=20, max_tokens=3000)
        jobs = AnswerJobs(
            store, self.provider, conversations, supervisor, timeout=30, apology="sorry"
        )
        worker = StreamWorker(
            store,
            RedisJobQueue(store, retention=3600, claim_after=claim_after),
            jobs,
            supervisor,
            consumer=f"worker-{len(self.workers)}",
            claim_after=claim_after,
            capacity=capacity,
            settle=settle if settle is not None else [],
            maintenance=[],
        )
        self.workers.append(worker)
        self.supervisors.append(supervisor)
        self.loops.append(asyncio.create_task(worker.run()))
        return worker

    async def close(self) -> None:
        for loop in self.loops:
            loop.cancel()
        await asyncio.gather(*self.loops, return_exceptions=True)
        for supervisor in self.supervisors:
            await supervisor.drain(1.0)
        for store in self.stores:
            await store.close()


@pytest.fixture
async def cluster(redis_url: str, redis_prefix: str) -> AsyncIterator[Cluster]:
    made = Cluster(redis_url, redis_prefix)
    yield made
    await made.close()


async def finished(store: RedisStore, answer_id: str) -> AnswerRecord:
    record = await store.wait_answer(answer_id, WITHIN)
    assert record is not None and record.finished
    return record


async def pending(store: RedisStore) -> int:
    keys = store.keys
    summary = await store.client.xpending(keys.jobs, keys.job_group)
    return int(summary["pending"])


@asynccontextmanager
async def gated(provider: ScriptedProvider, question: str) -> AsyncIterator[asyncio.Event]:
    gate = asyncio.Event()
    provider.scripts[question] = Script(["first answer"], gate=gate)
    try:
        yield gate
    finally:
        gate.set()


async def test_a_follow_up_on_another_worker_waits_for_the_earlier_answer(
    cluster: Cluster,
) -> None:
    dispatcher, store = await cluster.web()
    first_worker = await cluster.worker(capacity=1)
    async with gated(cluster.provider, "first"):
        first = await dispatcher.accept(msg("first", 1))
        for _ in range(200):
            if cluster.provider.calls:
                break
            await asyncio.sleep(0.02)
        second_worker = await cluster.worker(capacity=1)  # the only one with room
        second = await dispatcher.accept(msg("second", 2))
        for _ in range(200):
            if second_worker.held:
                break
            await asyncio.sleep(0.02)
        assert (first_worker.held, second_worker.held) == (1, 1)
        await asyncio.sleep(0.5)
        assert cluster.provider.questions() == ["first"]  # the follow-up waits its turn
    done = await finished(store, second.answer.id)
    assert cluster.provider.questions() == ["first", "second"]
    context = [(m.role, m.content) for m in cluster.provider.calls[1].messages]
    assert context[-3:] == [("user", "first"), ("assistant", "first answer"), ("user", "second")]
    assert done.text == "answer to second"
    assert (await finished(store, first.answer.id)).text == "first answer"


async def test_a_job_left_by_a_dead_worker_is_taken_over_and_answered(cluster: Cluster) -> None:
    dispatcher, store = await cluster.web()
    ticket = await dispatcher.accept(msg("orphaned", 1))
    dead = JobStream(store, consumer="dead", claim_after=1.0)
    await dead.ensure_group()
    taken = await dead.read(10, block=1.0)
    assert [job.answer_id for job in taken] == [ticket.answer.id]  # and it dies holding it

    await cluster.worker(claim_after=1.0)
    done = await finished(store, ticket.answer.id)
    assert done.text == "answer to orphaned"
    for _ in range(100):
        if await pending(store) == 0:
            break
        await asyncio.sleep(0.05)
    assert await pending(store) == 0


async def test_a_job_is_acknowledged_only_once_its_answer_is_settled(cluster: Cluster) -> None:
    dispatcher, store = await cluster.web()
    settled: list[str] = []

    async def settle(record: AnswerRecord) -> None:
        settled.append(record.id)
        if len(settled) == 1:
            raise RuntimeError("the push failed half way")  # not settled: no acknowledgement

    await cluster.worker(claim_after=1.0, settle=[settle])
    ticket = await dispatcher.accept(msg("q", 1))
    await finished(store, ticket.answer.id)
    for _ in range(100):
        if len(settled) == 2:
            break
        await asyncio.sleep(0.05)
    # Taken over (here by the same worker) and settled again; generated only once.
    assert settled == [ticket.answer.id, ticket.answer.id]
    for _ in range(100):
        if await pending(store) == 0:
            break
        await asyncio.sleep(0.05)
    assert await pending(store) == 0
    assert cluster.provider.questions() == ["q"]


async def test_an_answer_never_queued_is_queued_by_the_sweep_and_answered(
    cluster: Cluster,
) -> None:
    store = await cluster.store()
    now = store.clock()
    record = await store.create_answer(
        AnswerRecord(
            id="lost",
            conversation="wechat_mp:gh_a:u1",
            dedup_key="msg:1",
            kind=AnswerKind.LLM,
            question="never queued",
            page_token="page-lost",
            created_at=now - 10,
            updated_at=now - 10,
            expires_at=now + 3600,
        )
    )
    queue = RedisJobQueue(store, retention=3600, claim_after=1.0)
    assert await queue.recover() == 1
    assert await queue.recover() == 0  # queued now: not again
    await cluster.worker(claim_after=1.0)
    done = await finished(store, record.id)
    assert (done.status, done.text) == (AnswerStatus.DONE, "answer to never queued")


async def test_a_job_that_fails_every_time_is_given_up_after_so_many_deliveries(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "MAX_DELIVERIES", 3)
    dispatcher, store = await cluster.web()
    settled: list[str] = []

    async def settle(record: AnswerRecord) -> None:
        settled.append(record.id)
        raise RuntimeError("a bug in a channel")

    await cluster.worker(claim_after=0.3, settle=[settle])
    ticket = await dispatcher.accept(msg("q", 1))
    for _ in range(200):
        if await pending(store) == 0 and settled:
            break
        await asyncio.sleep(0.05)
    assert await pending(store) == 0  # acknowledged: given up
    assert settled == [ticket.answer.id] * 3  # tried on each of the 3 deliveries, no more
    await asyncio.sleep(1.0)
    assert len(settled) == 3
    assert cluster.provider.questions() == ["q"]
