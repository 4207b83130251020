"""The typing indicator (「对方正在输入」) while an answer that will be pushed is generated.

WeChat shows it for 15 s, only within 30 s of the user's last interaction (else 45080), and
refuses a second one while it shows (45081). So it is sent when the answer is handed to push
(unless the answer is ready within a second) and renewed every 15 s while the job runs, until
30 s after the user wrote. It is a courtesy: every failure is logged at debug level and ends
it, and it never delays the answer itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from chatgate.channels.wechat_mp.api import WeChatAPI
from chatgate.channels.wechat_mp.errcodes import WeChatAPIError
from chatgate.core.tasks import SupervisorClosed, TaskSupervisor
from chatgate.store.base import Store

log = logging.getLogger(__name__)

LASTS = 15.0  # seconds WeChat shows the indicator
# An answer that comes this quickly needs no indicator: it would only cost an API call.
SHOW_AFTER = 1.0
NEEDS_INTERACTION = 30.0  # WeChat refuses it this long after the user's last interaction
_ALREADY_SHOWING = 45081
# Renew a little after it ran out (sooner is refused with 45081), stop a little before 30 s.
_RENEW_MARGIN = 0.3
_LATE_MARGIN = 1.0


async def _set_within(event: asyncio.Event, seconds: float) -> bool:
    """Whether ``event`` is set within ``seconds``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


class TypingIndicator:
    """One renewal loop per answer being generated for push, owned by the supervisor.

    A loop learns that its answer is finished from ``finished`` (the answer jobs' hook, via the
    pusher) without polling the store; before each renewal it reads the answer once, for jobs
    that run in another process.
    """

    def __init__(
        self,
        api: WeChatAPI,
        store: Store,
        supervisor: TaskSupervisor,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = api
        self._store = store
        self._supervisor = supervisor
        self._clock = clock
        self._loops: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}

    def show(self, user: str, answer_id: str, interacted: float) -> None:
        """Show typing to ``user`` until the answer is finished; ``interacted``: when they wrote."""
        if answer_id in self._loops:
            return
        done = asyncio.Event()
        try:
            task = self._supervisor.spawn(
                self._loop(user, answer_id, interacted, done), name=f"typing:{answer_id}"
            )
        except SupervisorClosed:
            return
        self._loops[answer_id] = (task, done)
        task.add_done_callback(lambda _: self._loops.pop(answer_id, None))

    def finished(self, answer_id: str) -> None:
        """The answer is ready: renew no more."""
        loop = self._loops.get(answer_id)
        if loop is not None:
            loop[1].set()

    async def stop(self, answer_id: str) -> None:
        """End the loop before the answer is sent, so no indicator follows the answer."""
        loop = self._loops.pop(answer_id, None)
        if loop is None or loop[0].done():
            return
        task, done = loop
        done.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _loop(
        self, user: str, answer_id: str, interacted: float, done: asyncio.Event
    ) -> None:
        if await _set_within(done, SHOW_AFTER):
            return
        while self._clock() - interacted < NEEDS_INTERACTION - _LATE_MARGIN:
            current = await self._store.get_answer(answer_id)
            if current is None or current.finished:
                return
            try:
                await self._api.typing(user)
            except WeChatAPIError as exc:
                # 45081: another answer's indicator is showing for this user, which is fine.
                if exc.errcode != _ALREADY_SHOWING:
                    log.debug("typing indicator for answer %s not shown: %s", answer_id, exc)
                    return
            if await _set_within(done, LASTS + _RENEW_MARGIN):
                return
