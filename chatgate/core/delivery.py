"""Delivery: what a reply carries — the next part of an answer, 「1」 fetches, the placeholder.

Positions are kept in the answer's own text (``delivered_upto``), so the answer page, a later
「1」 and a push all agree on what the user has already seen. Each part is cut from the raw
answer at a natural boundary, then rendered for the channel (markdown made plain for WeChat)
and measured after rendering, so the byte limit holds for what is actually sent.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from chatgate.core.splitting import take_part, utf8_len
from chatgate.core.telemetry import FETCH, NO_TELEMETRY, Telemetry, channel_of, unseen
from chatgate.core.texts import Texts
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus, Store

log = logging.getLogger(__name__)


def _identity(text: str) -> str:
    return text


def _no_link(answer: AnswerRecord) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class Surface:
    """How one channel shows text: a byte limit per message, a renderer, answer links."""

    max_bytes: int
    render: Callable[[str], str] = _identity
    link_for: Callable[[AnswerRecord], str | None] = _no_link


@dataclass(frozen=True, slots=True)
class Part:
    text: str  # rendered, suffix included
    upto: int  # offset in the raw answer text after this part
    more: bool  # text remains after this part


_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)


def open_fence(text: str, end: int) -> str:
    """The fence line to reopen if ``text[:end]`` stops inside a fenced code block.

    Parts are cut from the raw markdown and rendered one by one; a part that starts inside a
    code block would otherwise render its code as prose.
    """
    fence = ""
    for match in _FENCE.finditer(text, 0, end):
        marker = match.group(1)
        if not fence:
            fence = marker
        elif marker == fence:
            fence = ""
    return fence + "\n" if fence else ""


def fetch_claim_key(fetch_id: str) -> str:
    return f"fetch-resolve:{fetch_id}"


# An answer's meta key saying how it reaches the user. Absent: through replies (inline, 「1」).
DELIVERY_META = "delivery"
# A channel sends the answer by itself (a push API). Replies leave it alone — no 「1」 fetch, no
# "unread answer" notice — until the channel gives it back by setting ``REPLIES``.
PUSHED = "push"
REPLIES = "reply"
# A push still not done this long after the answer finished is taken to have failed without
# saying so (a crash at the wrong moment, a bug): replies offer the rest, so nothing is lost.
PUSH_PATIENCE = 300.0


def handed_off(answer: AnswerRecord, now: float | None = None) -> bool:
    """Whether a channel is sending this answer itself, so replies must not show it too.

    With ``now``, a finished answer whose push is overdue (``PUSH_PATIENCE``) no longer is.
    """
    if answer.meta.get(DELIVERY_META) != PUSHED:
        return False
    finished = answer.finished_at
    return now is None or finished is None or now - finished < PUSH_PATIENCE


def cut_parts(text: str, surface: Surface, start: int = 0) -> list[Part]:
    """``text`` from ``start`` as parts that each fit ``surface``, none with 「回复1继续」.

    For channels that send a whole answer at once (DingTalk, active pushes). Each part is cut
    at a natural boundary and measured after rendering; a code block cut in two is closed at
    the end of one part and reopened at the start of the next. Parts that render empty are
    skipped, so an all-whitespace text gives none.
    """
    parts: list[Part] = []
    while start < len(text):
        reopen = open_fence(text, start)

        def render(raw: str, upto: int, reopen: str = reopen) -> str:
            close = open_fence(text, upto).strip()
            closing = "\n" + close if close and upto < len(text) else ""
            return surface.render(reopen + raw + closing).strip()

        limit = surface.max_bytes
        while True:
            raw, upto = take_part(text, start, limit)
            shown = render(raw, upto)
            overshoot = utf8_len(shown) - surface.max_bytes
            if overshoot <= 0 or limit - overshoot < 16:
                break
            # Rendering (a reopened fence, say) grew the part: cut the raw part shorter.
            limit -= overshoot
        if shown:
            parts.append(Part(shown, upto, more=upto < len(text)))
        start = upto
    return parts


class Delivery:
    """Turns answer records into the text of one reply, and records what was delivered."""

    def __init__(
        self,
        store: Store,
        surface: Surface,
        texts: Texts,
        *,
        answer_ttl: float,
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._store = store
        self._surface = surface
        self._texts = texts
        self._ttl = answer_ttl
        self._clock = clock
        self._telemetry = telemetry

    # -- cutting parts --------------------------------------------------------------------
    def part(self, answer: AnswerRecord, start: int, *, reserve: str = "") -> Part:
        """The next part of ``answer`` from ``start``, with the "reply 1" suffix if more remains.

        ``reserve`` is text that will be appended after the part (a notice) and must fit too.
        """
        text = answer.text
        reopen = open_fence(text, start)

        def render(raw: str) -> str:
            return self._surface.render(reopen + raw).strip()

        budget = self._surface.max_bytes - utf8_len(reserve)
        rest = render(text[start:])
        if utf8_len(rest) <= budget:
            return Part(rest, len(text), more=False)
        link = self._surface.link_for(answer)
        suffix = self._texts.more_with_link.format(link=link) if link else self._texts.more
        limit = budget
        while True:
            raw, upto = take_part(text, start, limit, suffix)
            shown = render(raw) + suffix
            overshoot = utf8_len(shown) - budget
            if overshoot <= 0 or limit - utf8_len(suffix) <= 16:
                return Part(shown, upto, more=True)
            # Rendering grew the part (a link spelled out, say): cut the raw part shorter.
            limit -= overshoot

    def parts(self, answer: AnswerRecord, start: int) -> list[Part]:
        """The rest of ``answer`` from ``start`` in parts without 「回复1继续」 (``cut_parts``)."""
        return cut_parts(answer.text, self._surface, start)

    # -- waiting for a reply to be ready ----------------------------------------------------
    async def ready(self, answer: AnswerRecord, deadline: float) -> AnswerRecord | None:
        """Wait until the reply for this message is known, or ``deadline`` passes.

        Returns the finished record to reply from, or ``None`` if it is not ready in time.
        """
        if answer.kind is AnswerKind.FETCH:
            return await self._resolve_fetch(answer, deadline)
        if answer.finished:
            return answer
        current = await self._store.wait_answer(answer.id, self._remaining(deadline))
        return current if current is not None and current.finished else None

    def _remaining(self, deadline: float) -> float:
        return max(0.0, deadline - self._clock())

    async def _resolve_fetch(self, fetch: AnswerRecord, deadline: float) -> AnswerRecord | None:
        current = await self._store.get_answer(fetch.id)
        if current is not None and current.finished:
            return current
        target, arriving = await self._fetch_target(fetch)
        if target is None:
            text = self._texts.arriving if arriving else self._texts.nothing_pending
            return await self._finish_fetch(fetch, text, None)
        if not target.finished:
            waited = await self._store.wait_answer(target.id, self._remaining(deadline))
            if waited is None or not waited.finished:
                return None
            target = waited
        part = self.part(target, target.delivered_upto)
        return await self._finish_fetch(fetch, part.text, (target, part))

    async def _fetch_target(self, fetch: AnswerRecord) -> tuple[AnswerRecord | None, bool]:
        """The oldest model answer before this 「1」 that the user has not fully seen.

        Answers a channel is pushing are skipped (they arrive by themselves); the flag says
        whether any was, so the reply can say so instead of "nothing pending".
        """
        pending = await self._store.conversation_answers(fetch.conversation, undelivered_only=True)
        pushed = False
        for answer in pending:
            if answer.kind is not AnswerKind.LLM or answer.seq >= fetch.seq:
                continue
            if handed_off(answer, self._clock()):
                pushed = True
                continue
            return answer, pushed
        return None, pushed

    async def _finish_fetch(
        self, fetch: AnswerRecord, text: str, delivered: tuple[AnswerRecord, Part] | None
    ) -> AnswerRecord | None:
        # Two tries of one 「1」 may resolve at once; only the claim holder advances delivery.
        if await self._store.claim_message(fetch_claim_key(fetch.id), fetch.id, self._ttl):
            return await self._store.wait_answer(fetch.id, 2.0)
        if delivered is not None:
            target, part = delivered
            if unseen(target):
                self._telemetry.delivered(channel_of(target.conversation), FETCH)
            await self._store.mark_delivered(target.id, part.upto)
        meta = {"target": delivered[0].id} if delivered else {}
        return await self._store.update_answer(
            fetch.id, status=AnswerStatus.DONE, text=text, meta=meta
        )

    # -- the text of a reply ----------------------------------------------------------------
    async def reply_text(self, answer: AnswerRecord) -> str:
        """The text to send for a finished record, recording what the user was shown."""
        if answer.kind is AnswerKind.FETCH:
            return answer.text
        if answer.kind is AnswerKind.REPLY:
            part = self.part(answer, 0)
            await self._store.mark_delivered(answer.id, part.upto)
            return part.text
        notice = await self.pending_notice(answer)
        part = self.part(answer, 0, reserve=notice)
        await self._store.mark_delivered(answer.id, part.upto)
        return part.text + notice

    async def pending_notice(self, answer: AnswerRecord) -> str:
        """The line telling the user another answer waits for 「1」, or "" if none does.

        Answers a channel is still pushing do not count: they arrive without 「1」.
        """
        pending = await self._store.conversation_answers(answer.conversation, undelivered_only=True)
        now = self._clock()
        others = [
            a
            for a in pending
            if a.kind is AnswerKind.LLM and a.id != answer.id and not handed_off(a, now)
        ]
        return self._texts.pending_notice if others else ""

    def placeholder(self, answer: AnswerRecord) -> str:
        """What the last try says when the answer is not ready: reply 1, or open the link."""
        if answer.kind is AnswerKind.FETCH:
            return self._texts.still_thinking
        link = self._surface.link_for(answer)
        if link:
            return self._texts.thinking_with_link.format(link=link)
        return self._texts.thinking
