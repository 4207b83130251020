"""Answer jobs: one provider call per answer, streamed into the store, in order per conversation."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from chatgate.core.cache import AnswerCache
from chatgate.core.conversations import Conversations
from chatgate.core.conversations import provider_state_key as provider_state_key  # re-exported
from chatgate.core.fairness import FairLimiter
from chatgate.core.locks import KeyedLocks
from chatgate.core.logcontext import answer_scope, log_scope
from chatgate.core.precedence import Precedence
from chatgate.core.tasks import SupervisorClosed, TaskSupervisor
from chatgate.core.textflush import TextFlusher
from chatgate.errors import ProviderError
from chatgate.providers.base import ChatMessage, ChatRequest, Provider
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus, Store

log = logging.getLogger(__name__)

IMAGES_META = "images"
# Set on an answer served from the answer cache, for the logs and the answer page.
CACHE_META = "cache"

# Told about every answer a job finished (done or failed), with its final record; or, for
# ``on_started``, about every job that starts calling the model. Hooks run inside the job's
# task and must not block: start a task for anything slow (a push, say).
FinishedHook = Callable[[AnswerRecord], None]


class TextFilter(Protocol):
    """Rewrites an answer's text as it streams, before the store (and so anyone) sees it.

    ``feed`` returns the text that is final so far and may hold a short tail back (to see a
    word split across chunks whole); ``flush`` returns the rest once the stream has ended.
    """

    def feed(self, chunk: str) -> str: ...

    def flush(self) -> str: ...


def _notify(hooks: list[FinishedHook], record: AnswerRecord, what: str) -> None:
    for hook in hooks:
        try:
            hook(record)
        except Exception:  # one broken listener must not fail the answer or the others
            log.exception("answer %s: a %s-hook failed", record.id, what)


def pseudonym(conversation: str) -> str:
    """A stable user id for the LLM vendor that does not reveal the platform's user id."""
    return hashlib.sha256(conversation.encode("utf-8")).hexdigest()[:24]


class AnswerJobs:
    """Runs answer jobs under the supervisor.

    A job waits for the conversation's earlier jobs (so a follow-up sees the answer before it
    in its context), then for a supervisor slot (``CHATGATE_MAX_JOBS``). A first-turn question
    may then be answered from the answer cache; otherwise the job waits for a provider place
    (the ``FairLimiter``, ``CHATGATE_LLM_CONCURRENCY``, round-robin across conversations) and
    streams the provider into the store. A failure or timeout becomes the apology text, kept
    as the answer. A job cancelled by
    shutdown stays ``running`` in the store, and ``recover`` runs it again on the next start.
    """

    def __init__(
        self,
        store: Store,
        provider: Provider,
        conversations: Conversations,
        supervisor: TaskSupervisor,
        *,
        timeout: float,
        apology: str,
        clock: Callable[[], float] = time.time,
        text_filter: Callable[[], TextFilter] | None = None,
        limiter: FairLimiter | None = None,
        cache: AnswerCache | None = None,
        text_flush_interval: float = 0.1,
        precedence: Precedence | None = None,
    ) -> None:
        self._store = store
        self._provider = provider
        self._conversations = conversations
        self._supervisor = supervisor
        self._timeout = timeout
        self._apology = apology
        self._clock = clock
        # Provider calls across conversations, fairly; None = only the supervisor's slots.
        self._limiter = limiter
        self._cache = cache
        # Streamed text reaches the store at most this often (the answer page shows at most
        # one update per 0.25 s), so answer jobs leave the store free for acknowledgements.
        self._flush_interval = text_flush_interval
        self._text_filter = text_filter  # a fresh filter per answer (moderation's masking)
        # Webhook acknowledgements go first: a job starts once they leave it a turn.
        self._precedence = precedence
        self._order = KeyedLocks()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._waiting: set[str] = set()  # jobs waiting their turn to be started
        # One bound method for every job held back (``Precedence.later``), not one apiece.
        self._spawn_in_turn = self._spawn
        self._direct = 0  # jobs run by ``run`` in their callers' tasks
        self._finished_hooks: list[FinishedHook] = []
        self._started_hooks: list[FinishedHook] = []

    def on_started(self, hook: FinishedHook) -> None:
        """Call ``hook`` with the answer's record when its job gets to call the model.

        That is after the conversation's earlier jobs and a provider slot, so a channel can
        show "typing" only while the model is actually answering.
        """
        self._started_hooks.append(hook)

    def on_finished(self, hook: FinishedHook) -> None:
        """Call ``hook`` with the final record of every answer a job of this process finishes.

        A channel that delivers answers itself (a push API) follows jobs this way instead of
        polling. Jobs cancelled by shutdown do not finish here; they run again on next start.
        """
        self._finished_hooks.append(hook)

    def _finished(self, record: AnswerRecord | None) -> None:
        if record is not None:
            _notify(self._finished_hooks, record, "finished")

    async def enqueue(self, answer: AnswerRecord) -> None:
        """The in-process ``JobQueue``: start the job in this process."""
        self.start(answer)

    async def run(self, answer: AnswerRecord) -> AnswerRecord | None:
        """Generate ``answer`` now, in the caller's task (a queue worker's); return it finished.

        Waits for this process's earlier jobs of the conversation and for a slot, as ``start``
        does. An answer finished already is returned as it is; ``None`` when it is gone.
        """
        self._direct += 1
        try:
            if self._precedence is not None:
                await self._precedence.turn()
            async with self._order.hold(answer.conversation), self._supervisor.slot():
                current = await self._store.get_answer(answer.id)
                if current is None or current.finished:
                    return current
                await self._generate(current)
            return await self._store.get_answer(answer.id)
        finally:
            self._direct -= 1

    def start(self, answer: AnswerRecord) -> None:
        """Run the job for ``answer`` unless this process already runs it.

        While webhooks load the loop the job waits its turn (``Precedence.later``) as a queue
        entry, not as a task: it is started, as a task, when the turn comes. The entry names
        the answer (id, conversation, message) without holding its record: a burst holds
        thousands, and each young collection would walk every field of every record, with
        every acknowledgement in flight waiting, where a tuple of strings is one the
        collector stops tracking. The job reads the record when it runs, as it always did.
        """
        if answer.id in self._running or answer.id in self._waiting:
            return
        job = (answer.id, answer.conversation, answer.dedup_key)
        if self._precedence is None:
            self._spawn(job)
            return
        self._waiting.add(answer.id)
        self._precedence.later(self._spawn_in_turn, job)

    def _spawn(self, job: tuple[str, str, str]) -> None:
        answer_id, conversation, dedup_key = job
        self._waiting.discard(answer_id)
        try:
            # The task copies the context: its log lines name the message, recovered or not.
            with log_scope(**answer_scope(conversation, dedup_key, answer_id)):
                task = self._supervisor.spawn(
                    self._run(answer_id, conversation), name=f"answer:{answer_id}"
                )
        except SupervisorClosed:
            log.info("answer %s left queued: shutting down; it runs on next start", answer_id)
            return
        self._running[answer_id] = task
        task.add_done_callback(lambda _: self._running.pop(answer_id, None))

    @property
    def active(self) -> int:
        """Jobs of this process not finished yet: waiting their turn or calling the model."""
        return len(self._running) + len(self._waiting) + self._direct

    async def recover(self) -> int:
        """Start every job a previous process left unfinished; returns how many."""
        unfinished = await self._store.unfinished_answers()
        for answer in unfinished:
            if answer.kind is AnswerKind.LLM:
                log.info("recovering answer %s left %s by a previous run", answer.id, answer.status)
                self.start(answer)
        return len(unfinished)

    async def _run(self, answer_id: str, conversation: str) -> None:
        # Its turn was given already (``start``).
        async with self._order.hold(conversation), self._supervisor.slot():
            current = await self._store.get_answer(answer_id)
            if current is None or current.finished:
                return
            await self._generate(current)

    async def _generate(self, answer: AnswerRecord) -> None:
        # A recovered job starts over: the text a dead process streamed is discarded.
        await self._store.update_answer(answer.id, status=AnswerStatus.RUNNING, text="")
        images = tuple(u for u in answer.meta.get(IMAGES_META, "").split("\n") if u)
        messages = await self._conversations.messages_for(
            answer.conversation, answer.question, images
        )
        state = await self._load_state(answer.conversation)
        request = ChatRequest(
            messages=messages,
            user=pseudonym(answer.conversation),
            conversation=answer.conversation,
            request_id=answer.id,
            state=dict(state),
        )
        cacheable = self._cache is not None and not images and _first_turn(messages, state)
        if cacheable and await self._answer_from_cache(answer):
            return
        parts: list[str] = []
        failure: str | None = None
        started = self._clock()
        shield = self._text_filter() if self._text_filter is not None else None
        streamed = TextFlusher(self._store, answer.id, self._flush_interval)
        try:
            async with self._provider_slot(answer.conversation), asyncio.timeout(self._timeout):
                _notify(self._started_hooks, answer, "started")
                async for chunk in self._provider.stream(request):
                    shown = shield.feed(chunk) if shield is not None and chunk else chunk
                    if shown:
                        parts.append(shown)
                        streamed.add(shown)
        except TimeoutError:
            failure = f"provider timed out after {self._timeout:g}s"
        except ProviderError as exc:
            failure = f"provider error: {exc}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a provider bug must not kill the job: the user gets the apology
            log.exception(
                "answer %s for message %s: unexpected provider failure", answer.id, answer.dedup_key
            )
            failure = f"unexpected error: {type(exc).__name__}"
        finally:
            await streamed.stop()
        if shield is not None:
            parts.append(shield.flush())
        text = "".join(parts)
        if request.state != state:
            # Kept even when the answer failed: it is the provider's side that changed.
            await self._store.kv_set(
                provider_state_key(answer.conversation), json.dumps(request.state)
            )
        if failure is None and not text.strip():
            failure = "provider returned an empty answer"
        if failure is not None:
            log.warning("answer %s for message %s failed: %s", answer.id, answer.dedup_key, failure)
            final = f"{text.rstrip()}\n\n{self._apology}" if text.strip() else self._apology
            failed = await self._store.update_answer(
                answer.id, status=AnswerStatus.FAILED, text=final, error=failure
            )
            self._finished(failed)
            return
        done = await self._store.update_answer(answer.id, status=AnswerStatus.DONE, text=text)
        log.info("answer %s done: %d chars in %.1fs", answer.id, len(text), self._clock() - started)
        self._finished(done)
        await self._conversations.record(
            answer.conversation, answer.question, text, answer_id=answer.id, at=answer.created_at
        )
        if cacheable and self._cache is not None:
            await self._cache.put(answer.question, text)

    def _provider_slot(self, conversation: str) -> AbstractAsyncContextManager[None]:
        if self._limiter is None:
            return contextlib.nullcontext()
        return self._limiter.slot(conversation)

    async def _answer_from_cache(self, answer: AnswerRecord) -> bool:
        """Finish ``answer`` with a cached answer to its question; False when there is none."""
        assert self._cache is not None
        text = await self._cache.get(answer.question)
        if text is None:
            return False
        done = await self._store.update_answer(
            answer.id, status=AnswerStatus.DONE, text=text, meta={CACHE_META: "hit"}
        )
        log.info("answer %s for message %s: from the answer cache", answer.id, answer.dedup_key)
        self._finished(done)
        await self._conversations.record(
            answer.conversation, answer.question, text, answer_id=answer.id, at=answer.created_at
        )
        return True

    async def _load_state(self, conversation: str) -> dict[str, str]:
        raw = await self._store.kv_get(provider_state_key(conversation))
        if not raw:
            return {}
        loaded = json.loads(raw)
        return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def _first_turn(messages: list[ChatMessage], state: dict[str, str]) -> bool:
    """Whether the model sees nothing of the conversation but this question."""
    return not state and all(m.role == "system" for m in messages[:-1])
