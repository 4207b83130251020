"""The worker role with Redis: answer jobs taken from the shared stream and run here.

Every job is an answer to generate. A worker answers a conversation only while it holds
the conversation's lease in Redis (renewed while held), and under it runs the
conversation's unfinished answers oldest first, up to the job's own: a follow-up is never
generated before the answer it follows, whichever worker took which job. The jobs this
worker took for one conversation queue behind each other here, under one lease, and take
one place of the ``capacity``.

A job is acknowledged once its answer is finished *and settled*: the channel's own delivery
(a push) done, or the answer recorded as waiting for the user. A worker that dies before
that leaves its jobs pending; another takes them over after ``claim_after`` seconds without
a sign of life from it (``JobStream.keep`` is that sign, sent every ``claim_after / 3``),
and its conversations' leases expire by then too. Running a job twice is harmless: a
finished answer is not generated again, and settling is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from chatgate.core.jobs import AnswerJobs
from chatgate.core.queue import Settle
from chatgate.core.tasks import SupervisorClosed, TaskSupervisor
from chatgate.errors import StoreError
from chatgate.store.base import AnswerRecord
from chatgate.store.redis import RedisStore
from chatgate.store.redis_queue import Job, JobStream, RedisJobQueue

log = logging.getLogger(__name__)

_READ_BLOCK = 2.0
# A job handed out this many times failed that often (a bug, not a dead worker): give it up.
MAX_DELIVERIES = 10
_BACKOFF_MAX = 5.0
# A consumer silent this long with nothing pending is a worker that is gone: forget it.
_FORGET_CONSUMERS_AFTER = 24 * 3600.0


def lease_name(conversation: str) -> str:
    return f"answering:{conversation}"


class StreamWorker:
    """Consumes the job stream until cancelled; ``run`` is a background loop of the app."""

    def __init__(
        self,
        store: RedisStore,
        queue: RedisJobQueue,
        jobs: AnswerJobs,
        supervisor: TaskSupervisor,
        *,
        consumer: str,
        claim_after: float,
        capacity: int,
        settle: list[Settle],
        maintenance: list[Callable[[], Awaitable[None]]],
    ) -> None:
        self._store = store
        self._queue = queue
        self._jobs = jobs
        self._supervisor = supervisor
        self._claim_after = claim_after
        self._capacity = capacity
        self._settle = settle
        self._maintenance = maintenance
        self.stream = JobStream(store, consumer=consumer, claim_after=claim_after)
        self._held: dict[str, Job] = {}  # entry id → job, until acknowledged or let go
        self._conversations: dict[str, list[Job]] = {}  # answered here now → jobs in line
        self._room = asyncio.Event()
        self._room.set()
        self._stopping = False
        self._done = asyncio.Event()  # stopping, and no job held any more

    @property
    def consumer(self) -> str:
        return self.stream.consumer

    @property
    def held(self) -> int:
        """Jobs this worker holds: running, or waiting behind one of their conversation."""
        return len(self._held)

    async def run(self) -> None:
        """Take jobs until cancelled; jobs already taken finish under the supervisor."""
        log.info("worker %s takes answer jobs from %s", self.consumer, self._store.keys.jobs)
        try:
            await self._until_ok(self.stream.ensure_group)
            # The keeper outlives this loop: it keeps taken jobs ours while shutdown drains them.
            self._supervisor.spawn(self._keep_forever(), name="jobs:keep")
            loop = asyncio.get_running_loop()
            next_takeover = next_sweep = loop.time()
            while True:
                await self._room.wait()
                now = loop.time()
                if now >= next_takeover:
                    next_takeover = now + self._claim_after / 2
                    await self._take(self.stream.take_over)
                if now >= next_sweep:
                    next_sweep = now + self._claim_after
                    await self._sweep()
                await self._take(
                    lambda count: self.stream.read(count, block=min(_READ_BLOCK, self._claim_after))
                )
        except SupervisorClosed:
            return
        finally:
            self._stopping = True
            self._check_done()

    async def _take(self, fetch: Callable[[int], Awaitable[list[Job]]]) -> None:
        free = self._capacity - len(self._conversations)
        if free <= 0:
            return
        try:
            taken = await fetch(free)
        except StoreError as exc:
            log.warning("taking jobs failed: %s; trying again", exc)
            await asyncio.sleep(1.0)
            return
        for job in taken:
            if job.deliveries > MAX_DELIVERIES:
                log.error(
                    "answer %s: its job failed %d times; giving it up",
                    job.answer_id,
                    job.deliveries,
                )
                with contextlib.suppress(StoreError):
                    await self.stream.ack(job.entry)
                continue
            self._accept(job)

    def _accept(self, job: Job) -> None:
        if job.entry in self._held:
            return
        self._held[job.entry] = job
        waiting = self._conversations.get(job.conversation)
        if waiting is not None:
            waiting.append(job)
            return
        self._conversations[job.conversation] = [job]
        self._start(job.conversation)

    def _start(self, conversation: str) -> None:
        try:
            self._supervisor.spawn(self._answer(conversation), name=f"jobs:{conversation}")
        except SupervisorClosed:
            # Shutting down: the jobs stay pending, and another worker takes them over.
            for job in self._conversations.pop(conversation, []):
                self._held.pop(job.entry, None)
            self._stopping = True
            self._check_done()
            return
        if len(self._conversations) >= self._capacity:
            self._room.clear()

    def _check_done(self) -> None:
        if self._stopping and not self._held:
            self._done.set()

    async def _answer(self, conversation: str) -> None:
        """Run this worker's jobs of ``conversation`` one after the other, under its lease."""
        line = self._conversations[conversation]
        failed = True
        try:
            async with self._store.lease(lease_name(conversation), ttl=self._claim_after):
                while line:
                    job = line[0]
                    await self._run(job)
                    line.pop(0)
                    self._held.pop(job.entry, None)
            failed = False
        except StoreError as exc:
            log.warning("jobs of %s left for another worker: %s", conversation, exc)
        except Exception:
            log.exception("jobs of %s failed; left for another worker", conversation)
        finally:
            if failed:
                # Still pending in the stream: another worker takes them over after
                # claim_after (this one too, once they are no longer kept fresh).
                for job in line:
                    self._held.pop(job.entry, None)
                line.clear()
            if line and not self._stopping:
                # Taken while the lease was being released: go round again.
                self._start(conversation)
            else:
                for job in line:
                    self._held.pop(job.entry, None)
                del self._conversations[conversation]
                self._room.set()
                self._check_done()

    async def _run(self, job: Job) -> None:
        """The job's answer finished and settled (and earlier ones first), then acknowledged."""
        answer = await self._store.get_answer(job.answer_id)
        if answer is not None and not answer.finished:
            for earlier in await self._due(answer):
                done = await self._jobs.run(earlier)
                if done is not None and done.id != answer.id and done.finished:
                    await self._settled(done)
            answer = await self._store.get_answer(job.answer_id)
        if answer is not None and answer.finished:
            await self._settled(answer)
        # Only now: a worker dying before this leaves the job for another to finish.
        await self.stream.ack(job.entry)

    async def _due(self, answer: AnswerRecord) -> list[AnswerRecord]:
        """The conversation's unfinished model answers up to ``answer``, oldest first."""
        due = await self._store.unfinished_in(answer.conversation, answer.seq)
        return due if any(a.id == answer.id for a in due) else [*due, answer]

    async def _settled(self, answer: AnswerRecord) -> None:
        for settle in self._settle:
            await settle(answer)

    async def _keep_forever(self) -> None:
        """Every ``claim_after / 3``: the jobs held here are still ours (a sign of life)."""
        while not self._done.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._claim_after / 3):
                    await self._done.wait()
                return
            try:
                await self.stream.keep(list(self._held))
            except StoreError as exc:
                log.warning("could not keep the jobs held here: %s", exc)

    async def _sweep(self) -> None:
        """What no job covers: answers never queued, channel deliveries a dead process left."""
        with contextlib.suppress(StoreError):
            await self._queue.recover()
        for task in self._maintenance:
            try:
                await task()
            except Exception:
                log.exception("a maintenance task failed; it runs again later")
        with contextlib.suppress(StoreError):
            await self.stream.forget_idle_consumers(_FORGET_CONSUMERS_AFTER)

    async def _until_ok(self, step: Callable[[], Awaitable[None]]) -> None:
        delay = 0.1
        while True:
            try:
                await step()
                return
            except StoreError as exc:
                log.warning("%s; trying again in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
