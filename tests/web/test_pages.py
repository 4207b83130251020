"""Answer and history pages over HTTP (in-process): content, data feeds, paging and 404s."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser

import httpx
import pytest
from starlette.applications import Starlette

from chatgate.core.links import Links, new_token
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus, Turn
from chatgate.store.memory import MemoryStore
from chatgate.web.live import LiveAnswers
from chatgate.web.pages import Pages, history_page
from chatgate.web.security import CSP
from chatgate.web.texts import PageTexts
from tests.store.support import FakeClock

TTL = 3600.0
CONVERSATION = "wechat_mp:gh:u1"
PUBLIC = "https://gate.example"


@dataclass
class Site:
    store: MemoryStore
    clock: FakeClock
    links: Links
    client: httpx.AsyncClient

    async def answer(
        self,
        question: str = "问题",
        text: str = "",
        status: AnswerStatus = AnswerStatus.RUNNING,
        kind: AnswerKind = AnswerKind.LLM,
        conversation: str = CONVERSATION,
    ) -> AnswerRecord:
        now = self.clock()
        record = AnswerRecord(
            id=new_token(),
            conversation=conversation,
            dedup_key=new_token(),
            kind=kind,
            question=question,
            page_token=new_token(),
            status=status,
            text=text,
            created_at=now,
            updated_at=now,
            finished_at=now if status.terminal else None,
            expires_at=now + TTL,
        )
        return await self.store.create_answer(record)

    async def history_path(self, conversation: str = CONVERSATION) -> str:
        link = await self.links.history_link(conversation)
        assert link is not None
        return link.removeprefix(PUBLIC)


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    links = Links(store, PUBLIC, ttl=TTL, clock=clock)
    pages = Pages(
        store, links, live=LiveAnswers(store, min_interval=0), clock=clock, history_size=4
    )
    app = Starlette(routes=pages.routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gate.test") as client:
        yield Site(store, clock, links, client)


def comparable(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted((k, v) for k, v in response.headers.items() if k != "date")
    return response.status_code, response.content, headers


# -- the answer page ------------------------------------------------------------------------
async def test_answer_page_shows_question_and_rendered_answer_escaped(site: Site) -> None:
    record = await site.answer(
        question="<b>这是什么？</b>", text="**答**：<script>x()</script>", status=AnswerStatus.DONE
    )
    response = await site.client.get(f"/a/{record.page_token}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    body = response.text
    assert "&lt;b&gt;这是什么？&lt;/b&gt;" in body
    assert "<strong>答</strong>：&lt;script&gt;x()&lt;/script&gt;" in body
    assert "<script>x()" not in body
    assert 'data-finished="1"' in body and PageTexts().done in body


class Scripts(HTMLParser):
    """Collects script elements (attributes and content) and event-handler attributes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.handlers: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        if tag == "script":
            self.scripts.append((dict(attrs), ""))
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


async def test_answer_page_carries_no_inline_script_and_the_security_headers(site: Site) -> None:
    record = await site.answer(text="<script>x()</script> <b onclick=x()>b</b>")
    response = await site.client.get(f"/a/{record.page_token}")
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    found = Scripts(response.text)
    assert [attrs.get("src", "").split("?")[0] for attrs, _ in found.scripts] == [
        "../static/page.js"
    ]
    assert all(not text.strip() for _, text in found.scripts)
    assert found.handlers == []


async def test_running_answer_page_shows_thinking_time_and_where_to_follow(site: Site) -> None:
    record = await site.answer()
    site.clock.advance(12.4)
    body = (await site.client.get(f"/a/{record.page_token}")).text
    texts = PageTexts()
    assert texts.thinking in body
    assert texts.elapsed_running.format(time="12 秒") in body
    assert f'data-events="{record.page_token}/events"' in body
    assert f'data-state="{record.page_token}/state"' in body
    assert 'data-finished="0"' in body


async def test_state_feed_gives_status_elapsed_and_html(site: Site) -> None:
    record = await site.answer(text="# 标题")
    site.clock.advance(3)
    state = (await site.client.get(f"/a/{record.page_token}/state")).json()
    assert state == {
        "status": "running",
        "label": PageTexts().writing,
        "finished": False,
        "elapsed": 3.0,
        "html": "<h1>标题</h1>\n",
    }


async def test_finished_time_stops_at_the_finish(site: Site) -> None:
    record = await site.answer()
    site.clock.advance(20)
    await site.store.update_answer(record.id, status=AnswerStatus.DONE, text="好")
    site.clock.advance(100)
    state = (await site.client.get(f"/a/{record.page_token}/state")).json()
    assert state["elapsed"] == 20.0 and state["finished"] is True
    body = (await site.client.get(f"/a/{record.page_token}")).text
    assert PageTexts().elapsed_finished.format(time="20 秒") in body


async def test_event_feed_of_a_finished_answer_is_one_event(site: Site) -> None:
    record = await site.answer(text="完", status=AnswerStatus.DONE)
    response = await site.client.get(f"/a/{record.page_token}/events")
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-store"
    frames = [f for f in response.text.split("\n\n") if f.startswith("data: ")]
    assert [json.loads(f.removeprefix("data: "))["html"] for f in frames] == ["<p>完</p>\n"]


async def test_head_of_the_event_feed_answers_at_once(site: Site) -> None:
    record = await site.answer()  # running: a GET would stream for its whole lifetime
    async with asyncio.timeout(5):
        response = await site.client.head(f"/a/{record.page_token}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")


async def test_unknown_malformed_and_expired_tokens_get_identical_404s(site: Site) -> None:
    record = await site.answer(text="x", status=AnswerStatus.DONE)
    history = await site.history_path()
    assert (await site.client.get(f"/a/{record.page_token}")).status_code == 200
    assert (await site.client.get(history)).status_code == 200
    unknown = new_token()
    before_expiry = [
        await site.client.get(path)
        for path in (
            f"/a/{unknown}",
            f"/a/{unknown}/state",
            f"/a/{unknown}/events",
            "/a/not-a-token",
            "/a/" + "x" * 300,
            f"/h/{unknown}",
            "/h/%3Cscript%3E",
        )
    ]
    site.clock.advance(TTL + 1)
    expired = [
        await site.client.get(path)
        for path in (
            f"/a/{record.page_token}",
            f"/a/{record.page_token}/state",
            f"/a/{record.page_token}/events",
            history,
        )
    ]
    reference = comparable(before_expiry[0])
    assert reference[0] == 404 and reference[1] == b"Not Found"
    assert all(comparable(r) == reference for r in before_expiry + expired)


async def test_a_fetch_record_has_no_link_but_its_page_does_not_break(site: Site) -> None:
    record = await site.answer(question="1", text="part", kind=AnswerKind.FETCH)
    assert site.links.answer_link(record) is None
    assert (await site.client.get(f"/a/{record.page_token}")).status_code == 200


# -- the history page -----------------------------------------------------------------------
async def exchanges(site: Site, count: int, conversation: str = CONVERSATION) -> None:
    for i in range(1, count + 1):
        site.clock.advance(10)
        at = site.clock()
        await site.store.append_turns(
            conversation,
            [Turn("user", f"问{i}", at, f"a{i}"), Turn("assistant", f"**答{i}**", at, f"a{i}")],
        )


def bubbles(body: str) -> list[str]:
    return re.findall(r'<div class="bubble [a-z]+">(.*?)</div>', body, re.S)


async def test_history_shows_the_newest_turns_newest_at_the_bottom(site: Site) -> None:
    await exchanges(site, 3)
    body = (await site.client.get(await site.history_path())).text
    assert bubbles(body) == [
        "问2",
        "<p><strong>答2</strong></p>\n",
        "问3",
        "<p><strong>答3</strong></p>\n",
    ]
    assert PageTexts().older in body and PageTexts().newest not in body


async def test_history_pages_back_through_every_turn_once(site: Site) -> None:
    await exchanges(site, 5)
    path = await site.history_path()
    seen: list[str] = []
    pages = 0
    url: str | None = path
    while url is not None:
        body = (await site.client.get(url)).text
        seen = [b for b in bubbles(body) if b.startswith("问")] + seen
        older = re.search(r'id="older" href="([^"]+)"', body)
        url = None if older is None else "/h/" + older.group(1).replace("&amp;", "&")
        pages += 1
        if url is not None:
            assert PageTexts().newest in (await site.client.get(url)).text
    assert seen == [f"问{i}" for i in range(1, 6)]
    assert pages == 3


async def test_history_with_no_turns_says_so(site: Site) -> None:
    body = (await site.client.get(await site.history_path())).text
    assert PageTexts().no_history in body


async def test_history_lists_answers_still_being_written_with_their_page(site: Site) -> None:
    await exchanges(site, 1)
    running = await site.answer(question="还在想的问题")
    await site.answer(question="别人的", conversation="wechat_mp:gh:u2")
    body = (await site.client.get(await site.history_path())).text
    assert PageTexts().pending_title in body
    assert "还在想的问题" in body and "别人的" not in body
    assert f'href="../a/{running.page_token}"' in body


async def test_history_refuses_a_before_that_is_not_a_number(site: Site) -> None:
    path = await site.history_path()
    for bad in ("abc", "nan", "inf"):
        response = await site.client.get(path, params={"before": bad})
        assert response.status_code == 400


async def test_history_of_one_conversation_never_shows_another(site: Site) -> None:
    await exchanges(site, 2, "wechat_mp:gh:u1")
    await exchanges(site, 2, "wechat_mp:gh:u2")
    mine = (await site.client.get(await site.history_path("wechat_mp:gh:u1"))).text
    theirs = (await site.client.get(await site.history_path("wechat_mp:gh:u2"))).text
    assert mine != theirs
    assert "wechat_mp" not in mine  # the conversation key (the user's id) is never shown


async def test_history_page_never_splits_the_turns_of_one_exchange() -> None:
    store = MemoryStore()
    turns = [Turn("user", "a", 1.0), Turn("assistant", "A", 1.0)]
    turns += [Turn("user", "b", 2.0), Turn("assistant", "B", 2.0), Turn("user", "c", 3.0)]
    await store.append_turns("c", turns)
    page = await history_page(store, "c", before=None, size=4)
    assert [t.content for t in page.turns] == ["b", "B", "c"]
    assert page.older == 2.0
    older = await history_page(store, "c", before=page.older, size=4)
    assert [t.content for t in older.turns] == ["a", "A"] and older.older is None


# -- static files ---------------------------------------------------------------------------
async def test_pages_link_static_files_by_content_version(site: Site) -> None:
    record = await site.answer()
    body = (await site.client.get(f"/a/{record.page_token}")).text
    for name, kind in (("page.css", "text/css"), ("page.js", "javascript")):
        match = re.search(rf'"\.\./static/{re.escape(name)}\?v=([0-9a-f]{{12}})"', body)
        assert match is not None, name
        response = await site.client.get(f"/static/{name}?v={match.group(1)}")
        assert response.status_code == 200
        assert kind in response.headers["content-type"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"].startswith("public")
