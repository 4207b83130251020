"""The seam between accepting a message and generating its answer: a job queue.

The dispatcher hands every answer the model must write to a ``JobQueue``. ``AnswerJobs`` is
the in-process one (the job runs in this process, as ``chatgate serve`` does alone); with a
shared store the queue can hand it to whichever worker process is free (the Redis stream
in ``chatgate.store.redis_queue``), and this process need not run jobs at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from chatgate.store.base import AnswerRecord


class JobQueue(Protocol):
    async def enqueue(self, answer: AnswerRecord) -> None:
        """See that ``answer`` gets generated, here or by a worker elsewhere; returns at once."""

    async def recover(self) -> int:
        """At startup: see that answers a previous run left unfinished get generated.

        Returns how many were found.
        """


# Awaited by a worker once an answer finished, before it acknowledges the job: the
# channel's own delivery of it (a push), so that a job is only done once the answer is
# delivered or recorded as waiting for the user.
Settle = Callable[[AnswerRecord], Awaitable[None]]
