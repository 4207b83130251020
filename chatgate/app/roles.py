"""Process roles: webhooks, answer jobs, or both, and the job queue each role uses.

- ``chatgate serve`` (``ALL``): webhooks and answer jobs in one process, on any store.
- ``chatgate serve --no-worker`` (``WEB``): webhooks only; jobs go to the Redis stream.
- ``chatgate worker`` (``WORKER``): answer jobs only, taken from the Redis stream; its HTTP
  side answers ``/healthz``, ``/readyz`` and ``/metrics`` and nothing else.

With Redis every role queues jobs on the shared stream, ``ALL`` included, so any worker of
the deployment can answer any message. With memory or SQLite jobs run in the process that
accepted the message, and the split roles are refused: nothing would run their jobs.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from chatgate.app.worker import StreamWorker
from chatgate.config import Settings
from chatgate.core.jobs import AnswerJobs
from chatgate.core.queue import JobQueue
from chatgate.errors import ConfigError
from chatgate.store.base import Store
from chatgate.store.redis import RedisStore
from chatgate.store.redis_queue import RedisJobQueue, consumer_name

if TYPE_CHECKING:
    from chatgate.app.wiring import Services


class Role(StrEnum):
    ALL = "all"
    WEB = "web"
    WORKER = "worker"

    @property
    def web(self) -> bool:
        """Serves webhooks and pages."""
        return self is not Role.WORKER

    @property
    def jobs(self) -> bool:
        """Runs answer jobs."""
        return self is not Role.WEB


def job_queue(settings: Settings, store: Store, jobs: AnswerJobs, role: Role) -> JobQueue:
    """Where the dispatcher sends answers: the Redis stream, or this process's ``jobs``."""
    if isinstance(store, RedisStore):
        return RedisJobQueue(
            store, retention=settings.answer_ttl, claim_after=settings.job_claim_after
        )
    if role is not Role.ALL:
        what = "serve --no-worker" if role is Role.WEB else "worker"
        raise ConfigError(
            f"chatgate {what} needs CHATGATE_STORE=redis://HOST:PORT/DB: the web and worker "
            "roles share their answer jobs through Redis"
        )
    return jobs


def stream_worker(settings: Settings, services: Services, role: Role) -> StreamWorker | None:
    """The loop taking jobs from the Redis stream, where this role runs jobs from it.

    It settles answers and runs maintenance with the services' lists, which channels fill
    after this.
    """
    store, queue = services.store, services.queue
    if not role.jobs or not isinstance(store, RedisStore) or not isinstance(queue, RedisJobQueue):
        return None
    return StreamWorker(
        store,
        queue,
        services.jobs,
        services.supervisor,
        consumer=consumer_name(),
        claim_after=settings.job_claim_after,
        capacity=settings.max_jobs,
        settle=services.settle,
        maintenance=services.maintenance,
    )
