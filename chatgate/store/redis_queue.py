"""Answer jobs on a Redis stream: the dispatcher adds, workers of one consumer group take.

``RedisJobQueue`` is the dispatcher's ``JobQueue`` in Redis deployments: ``enqueue`` adds an
entry (answer id, conversation) to the stream and notes its id in the answer's meta, in one
script. ``JobStream`` is the consumer side a worker uses: read new entries, keep its own
entries fresh while it works on them, take over entries another worker left idle for
``claim_after`` seconds (it died), and acknowledge an entry once its answer is finished and
delivered (or waiting for the user). An entry is delivered at least once; the worker makes
running it twice harmless.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from dataclasses import dataclass, replace
from typing import Any

from redis.exceptions import RedisError, ResponseError

from chatgate.errors import StoreError
from chatgate.store.base import AnswerRecord
from chatgate.store.redis import RedisStore

log = logging.getLogger(__name__)

# The answer's meta key holding its stream entry id: an unfinished answer without it was
# never queued (its process died in between), and a sweep queues it.
JOB_META = "job"

# KEYS: jobs stream, answer. ARGV: answer id, conversation, oldest entry id to keep.
_ENQUEUE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
local id = redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[3], '*',
                      'answer', ARGV[1], 'conversation', ARGV[2])
redis.call('HSET', KEYS[2], 'm:job', id)
return id
"""


@dataclass(frozen=True, slots=True)
class Job:
    """One stream entry: an answer to generate (and deliver)."""

    entry: str
    answer_id: str
    conversation: str
    deliveries: int = 1  # how many times the group handed it out (more after take-overs)


def consumer_name() -> str:
    """This process's name in the consumer group: host, pid, and a random tail."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _jobs(entries: Any) -> list[Job]:
    jobs = []
    for entry, fields in entries or []:
        if not fields:  # deleted from the stream meanwhile (trimmed): nothing to run
            continue
        jobs.append(Job(str(entry), str(fields["answer"]), str(fields["conversation"])))
    return jobs


class RedisJobQueue:
    """The dispatcher's queue: answers go to the stream for any worker to take.

    ``retention`` is how long (seconds) entries are kept at least: an entry older than its
    answer is useless, so the stream is trimmed to about the answer lifetime.
    """

    def __init__(self, store: RedisStore, *, retention: float, claim_after: float) -> None:
        self._store = store
        self._retention = retention
        self._claim_after = claim_after
        self._script: Any = None

    async def enqueue(self, answer: AnswerRecord) -> None:
        client = self._store.client
        if self._script is None:
            self._script = client.register_script(_ENQUEUE)
        keys = self._store.keys
        oldest_ms = max(0, int((self._store.clock() - self._retention) * 1000))
        try:
            entry = await self._script(
                keys=[keys.jobs, keys.answer(answer.id)],
                args=[answer.id, answer.conversation, f"{oldest_ms}-0"],
            )
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        if entry is None:
            log.warning("answer %s vanished before it was queued", answer.id)
        else:
            log.debug("answer %s queued as job %s", answer.id, entry)

    async def recover(self) -> int:
        """Queue the unfinished answers that never made it into the stream; how many.

        Jobs a dead worker left in the stream need nothing here: a live worker takes them
        over after ``claim_after``.
        """
        cutoff = self._store.clock() - self._claim_after
        orphans = [
            a
            for a in await self._store.unfinished_answers()
            if JOB_META not in a.meta and a.updated_at <= cutoff
        ]
        for answer in orphans:
            log.warning("answer %s was never queued (its process died); queueing it", answer.id)
            await self.enqueue(answer)
        return len(orphans)


class JobStream:
    """One worker's side of the stream: read, keep, take over, acknowledge."""

    def __init__(self, store: RedisStore, *, consumer: str, claim_after: float) -> None:
        self._store = store
        self.consumer = consumer
        self._claim_after_ms = max(1, int(claim_after * 1000))
        self._group_ready = False

    @property
    def _keys(self) -> tuple[str, str]:
        return self._store.keys.jobs, self._store.keys.job_group

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) unless they exist."""
        stream, group = self._keys
        try:
            # From the stream's start: jobs queued before any worker ever ran are taken too.
            await self._store.client.xgroup_create(stream, group, id="0", mkstream=True)
            log.info("created the job consumer group %s on %s", group, stream)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise StoreError(f"Redis: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis unavailable: {exc}") from exc
        self._group_ready = True

    async def read(self, count: int, block: float) -> list[Job]:
        """New jobs for this worker, waiting up to ``block`` seconds for one."""
        stream, group = self._keys
        reply = await self._call(
            lambda: self._store.client.xreadgroup(
                group, self.consumer, {stream: ">"}, count=count, block=int(block * 1000)
            )
        )
        jobs: list[Job] = []
        for _, entries in reply or []:
            jobs.extend(_jobs(entries))
        return jobs

    async def take_over(self, count: int) -> list[Job]:
        """Jobs other workers left idle for ``claim_after`` (they died), now this worker's."""
        stream, group = self._keys
        taken: list[Job] = []
        cursor = "0-0"
        while len(taken) < count:
            reply = await self._call(
                lambda c=cursor: self._store.client.xautoclaim(
                    stream, group, self.consumer, self._claim_after_ms, c, count=count
                )
            )
            cursor, entries = str(reply[0]), reply[1]
            gone = reply[2] if len(reply) > 2 else []
            if gone:  # trimmed while pending: nothing left to run
                await self.ack(*map(str, gone))
            taken.extend(_jobs(entries))
            if cursor == "0-0":
                break
        return await self._counted(taken)

    async def _counted(self, jobs: list[Job]) -> list[Job]:
        """``jobs`` with their delivery counts (a job failing again and again shows here)."""
        if not jobs:
            return jobs
        stream, group = self._keys
        entries = sorted((job.entry for job in jobs), key=lambda e: tuple(map(int, e.split("-"))))
        pending = await self._call(
            lambda: self._store.client.xpending_range(
                stream, group, entries[0], entries[-1], len(jobs) * 2, self.consumer
            )
        )
        counts = {str(p["message_id"]): int(p["times_delivered"]) for p in pending}
        return [replace(job, deliveries=counts.get(job.entry, job.deliveries)) for job in jobs]

    async def keep(self, entries: list[str]) -> None:
        """Tell the group this worker is still on ``entries``, so nobody takes them over."""
        if not entries:
            return
        stream, group = self._keys
        ids: list[int | bytes | str | memoryview[int]] = list(entries)
        await self._call(
            lambda: self._store.client.xclaim(stream, group, self.consumer, 0, ids, justid=True)
        )

    async def ack(self, *entries: str) -> None:
        if not entries:
            return
        stream, group = self._keys
        await self._call(lambda: self._store.client.xack(stream, group, *entries))

    async def forget_idle_consumers(self, idle: float) -> int:
        """Remove workers that left nothing pending and were silent ``idle`` seconds (dead)."""
        stream, group = self._keys
        consumers = await self._call(lambda: self._store.client.xinfo_consumers(stream, group))
        removed = 0
        for info in consumers:
            name = str(info["name"])
            if name != self.consumer and not info["pending"] and info["idle"] > idle * 1000:
                await self._call(
                    lambda n=name: self._store.client.xgroup_delconsumer(stream, group, n)
                )
                removed += 1
        return removed

    async def _call(self, command: Any) -> Any:
        """Run ``command()``; a group lost with Redis's data is created again, once."""
        for attempt in (1, 2):
            try:
                return await command()
            except ResponseError as exc:
                if "NOGROUP" in str(exc) and attempt == 1:
                    log.warning("the job consumer group is gone (Redis lost its data?); again")
                    await self.ensure_group()
                    continue
                raise StoreError(f"Redis: {exc}") from exc
            except (RedisError, OSError) as exc:
                raise StoreError(f"Redis unavailable: {exc}") from exc
        raise AssertionError("unreachable")
