"""The answer page (``/a/{token}``) and the history page (``/h/{token}``), with their data feeds.

``/a/{token}`` shows one question and its answer; while the answer is generated the page
script follows ``/a/{token}/events`` (SSE) or, where that fails, polls ``/a/{token}/state``.
``/h/{token}`` shows a conversation's turns, newest at the bottom, ``?before=`` for older
pages. Every URL in a page is relative, so the gateway works behind a proxy that serves it
under a path prefix. Any token that is not valid now — unknown, expired, malformed — gets
the same plain 404.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route, request_response
from starlette.staticfiles import StaticFiles

from chatgate.core.links import ANSWER_PREFIX, HISTORY_PREFIX, Links, token_shaped
from chatgate.core.telemetry import NO_TELEMETRY, PAGE, Telemetry, channel_of, unseen
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus, Store, Turn
from chatgate.web.live import LiveAnswers
from chatgate.web.render import render_markdown
from chatgate.web.security import SecurityHeaders, not_found
from chatgate.web.texts import PageTexts

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
STATIC_PREFIX = "/static"
# Static files are named with a content hash in their URL, so browsers may keep them a day.
STATIC_CACHE = "public, max-age=86400"
HISTORY_PAGE_TURNS = 20


@dataclass(frozen=True, slots=True)
class AnswerView:
    """What the answer page shows of a record; also the body of each live event."""

    status: str
    label: str
    finished: bool
    elapsed: float
    html: str

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "label": self.label,
            "finished": self.finished,
            "elapsed": self.elapsed,
            "html": self.html,
        }


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of a conversation's turns, oldest first, and the cursor for the page before."""

    turns: list[Turn]
    older: float | None


async def history_page(
    store: Store, conversation: str, *, before: float | None, size: int
) -> HistoryPage:
    """The ``size`` newest turns before ``before``, never splitting turns that share a time.

    The store pages by time; the turns of one exchange share one. A page boundary inside
    such a group would lose the rest of it on the next page, so the group moves whole to
    the older page (unless it alone fills the page).
    """
    turns = await store.history(conversation, limit=size + 1, before=before)
    if len(turns) <= size:
        return HistoryPage(turns, None)
    beyond, turns = turns[0], turns[1:]
    if turns[0].at == beyond.at:
        rest = [t for t in turns if t.at != beyond.at]
        turns = rest or turns
    return HistoryPage(turns, turns[0].at)


def _static_versions() -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        for path in STATIC_DIR.iterdir()
        if path.is_file()
    }


class Pages:
    """Builds the pages' routes over a store, the links and the live-update streams."""

    def __init__(
        self,
        store: Store,
        links: Links,
        *,
        live: LiveAnswers | None = None,
        texts: PageTexts | None = None,
        clock: Callable[[], float] = time.time,
        history_size: int = HISTORY_PAGE_TURNS,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._store = store
        self._telemetry = telemetry
        self._links = links
        self.live = live or LiveAnswers(store)
        self._texts = texts or PageTexts()
        self._clock = clock
        self._history_size = history_size
        versions = _static_versions()
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        # Pages live one level down (/a/TOKEN, /h/TOKEN): ``..`` is the gateway's root.
        self._env.globals["static"] = lambda name: (
            f"..{STATIC_PREFIX}/{name}?v={versions.get(name, '0')}"
        )

    def routes(self) -> list[BaseRoute]:
        def page(endpoint: Callable[[Request], Any]) -> SecurityHeaders:
            return SecurityHeaders(request_response(endpoint))

        static = StaticFiles(directory=STATIC_DIR)
        return [
            Route(ANSWER_PREFIX + "{token}", page(self.answer_page), methods=["GET"]),
            Route(ANSWER_PREFIX + "{token}/state", page(self.answer_state), methods=["GET"]),
            Route(ANSWER_PREFIX + "{token}/events", page(self.answer_events), methods=["GET"]),
            Route(HISTORY_PREFIX + "{token}", page(self.history), methods=["GET"]),
            Mount(STATIC_PREFIX, SecurityHeaders(static, cache_control=STATIC_CACHE)),
        ]

    # -- the answer page --------------------------------------------------------------------
    async def _answer(self, request: Request) -> AnswerRecord | None:
        token = str(request.path_params["token"])
        if not token_shaped(token):
            return None
        return await self._store.get_answer_by_token(token)

    def view(self, record: AnswerRecord) -> AnswerView:
        texts = self._texts
        if record.status is AnswerStatus.DONE:
            label = texts.done
        elif record.status is AnswerStatus.FAILED:
            label = texts.failed
        else:
            label = texts.writing if record.text else texts.thinking
        end = record.finished_at if record.finished and record.finished_at else self._clock()
        elapsed = round(max(0.0, end - record.created_at), 1)
        return AnswerView(
            record.status.value, label, record.finished, elapsed, render_markdown(record.text)
        )

    def _elapsed_text(self, view: AnswerView) -> str:
        template = self._texts.elapsed_finished if view.finished else self._texts.elapsed_running
        return template.format(time=self._texts.duration(view.elapsed))

    async def answer_page(self, request: Request) -> Response:
        record = await self._answer(request)
        if record is None:
            return not_found()
        await self._count_first_view(record)
        view = self.view(record)
        return self._html(
            "answer.html",
            title=self._texts.answer_title,
            token=record.page_token,
            question=record.question,
            view=view,
            elapsed_text=self._elapsed_text(view),
        )

    async def _count_first_view(self, record: AnswerRecord) -> None:
        """An answer opened here before any of it reached the chat counts as delivered by
        page — once, however often the page is opened, on whichever instance."""
        if not unseen(record):
            return
        claim = f"page-seen:{record.id}"
        ttl = max(60.0, (record.expires_at or self._clock()) - self._clock())
        if await self._store.claim_message(claim, record.id, ttl) is None:
            self._telemetry.delivered(channel_of(record.conversation), PAGE)

    async def answer_state(self, request: Request) -> Response:
        record = await self._answer(request)
        if record is None:
            return not_found()
        return JSONResponse(self.view(record).as_json())

    async def answer_events(self, request: Request) -> Response:
        record = await self._answer(request)
        if record is None:
            return not_found()
        if request.method == "HEAD":
            # A stream would run for its whole lifetime with nobody to read it.
            return Response(media_type="text/event-stream")
        stream = self.live.events(record.id, lambda r: self.view(r).as_json())
        # X-Accel-Buffering: a buffering proxy (nginx) would hold events back until the end.
        return StreamingResponse(
            stream, media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
        )

    # -- the history page -------------------------------------------------------------------
    async def history(self, request: Request) -> Response:
        token = str(request.path_params["token"])
        conversation = await self._links.resolve_history(token)
        if conversation is None:
            return not_found()
        raw_before = request.query_params.get("before")
        before: float | None = None
        if raw_before is not None:
            try:
                before = float(raw_before)
            except ValueError:
                before = math.nan
            if not math.isfinite(before):
                return PlainTextResponse("Bad Request: before must be a number", 400)
        page = await history_page(self._store, conversation, before=before, size=self._history_size)
        pending = [] if before is not None else await self._pending(conversation)
        here = quote(token)
        return self._html(
            "history.html",
            title=self._texts.history_title,
            turns=[self._turn(t) for t in page.turns],
            pending=pending,
            older=None if page.older is None else f"{here}?before={page.older!r}",
            newest=here if before is not None else None,
        )

    def _turn(self, turn: Turn) -> Mapping[str, Any]:
        role = "user" if turn.role == "user" else "assistant"
        return {
            "role": role,
            "text": turn.content,
            "html": render_markdown(turn.content) if role == "assistant" else "",
            "at": turn.at,
            "iso": datetime.fromtimestamp(turn.at, UTC).isoformat(timespec="seconds"),
        }

    async def _pending(self, conversation: str) -> list[Mapping[str, str]]:
        answers = await self._store.conversation_answers(conversation)
        return [
            {"question": a.question, "href": f"..{ANSWER_PREFIX}{quote(a.page_token)}"}
            for a in answers
            if a.kind is AnswerKind.LLM and not a.finished and a.page_token
        ]

    def _html(self, template: str, **context: Any) -> HTMLResponse:
        body = self._env.get_template(template).render(texts=self._texts, **context)
        return HTMLResponse(body)
