"""The job-queue seam: the dispatcher hands answers to any queue; a worker runs them in its task."""

from __future__ import annotations

from chatgate.core.dispatcher import Dispatcher
from chatgate.core.messages import Inbound, Kind
from chatgate.core.router import Router
from chatgate.core.routes import default_router
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus
from tests.core.conftest import Core


def msg(text: str, n: int) -> Inbound:
    return Inbound("wechat_mp", "gh_a", "u1", f"msg:{n}", Kind.TEXT, text=text)


class RecordingQueue:
    """A queue elsewhere: it only remembers what it was given."""

    def __init__(self) -> None:
        self.enqueued: list[AnswerRecord] = []

    async def enqueue(self, answer: AnswerRecord) -> None:
        self.enqueued.append(answer)

    async def recover(self) -> int:
        return 0


async def test_the_dispatcher_hands_model_answers_to_its_queue_and_runs_nothing_itself(
    core: Core,
) -> None:
    queue = RecordingQueue()
    root = Router()
    root.include(default_router(core.texts))
    dispatcher = Dispatcher(core.store, root, queue, answer_ttl=3600)

    asked = await dispatcher.accept(msg("a question", 1))
    retried = await dispatcher.accept(msg("a question", 1))
    fetch = await dispatcher.accept(msg("1", 2))

    assert [a.id for a in queue.enqueued] == [asked.answer.id]
    assert retried.answer.id == asked.answer.id
    assert fetch.answer.kind is AnswerKind.FETCH
    assert core.provider.calls == []
    record = await core.store.get_answer(asked.answer.id)
    assert record is not None and record.status is AnswerStatus.QUEUED


async def test_run_generates_in_the_callers_task_and_returns_the_finished_record(
    core: Core,
) -> None:
    queue = RecordingQueue()
    root = Router()
    root.include(default_router(core.texts))
    ticket = await Dispatcher(core.store, root, queue, answer_ttl=3600).accept(msg("q", 1))
    finished: list[str] = []
    core.jobs.on_finished(lambda record: finished.append(record.id))

    done = await core.jobs.run(ticket.answer)

    assert done is not None and done.status is AnswerStatus.DONE
    assert done.text == "answer to q"
    assert finished == [ticket.answer.id]
    assert core.jobs.active == 0
    # Run again (a queue delivered the job twice): nothing is generated twice.
    again = await core.jobs.run(ticket.answer)
    assert again == done
    assert core.provider.questions() == ["q"]
    assert finished == [ticket.answer.id]
