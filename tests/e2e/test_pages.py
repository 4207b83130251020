"""Answer and history pages in real headless Chromium, against the real app over loopback.

The browser is Debian's ``chromium`` driven by playwright (``executable_path``; no browser is
ever downloaded). Without it these tests fail, saying how to install it: a missing browser
must never look like a pass. Screenshots at phone width go to ``artifacts/``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Dialog, Page, Request, async_playwright
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from chatgate.app.asgi import build_app
from chatgate.app.wiring import Services
from chatgate.config import load_settings
from chatgate.core.messages import Inbound, Kind
from chatgate.core.texts import Texts
from chatgate.sim.llm import FakeLLM
from chatgate.sim.llm_script import Script, plan, user_texts
from chatgate.sim.server import LoopbackServer
from chatgate.sim.wechat import WeChatSim
from chatgate.store.base import AnswerRecord
from chatgate.store.memory import MemoryStore
from chatgate.web.texts import PageTexts
from tests.e2e.harness import TOKEN, gateway_in_process, gateway_settings

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = os.environ.get("CHATGATE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PHONE = {"width": 390, "height": 844}
WECHAT_UA = (
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 MicroMessenger/8.0.47.2560 "
    "WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64"
)
# The public URL links are built from; a proxy would map it onto the loopback server.
PUBLIC = "https://chat.example.test"
# For things that should happen within moments; generous, as the machine is shared.
SOON_MS = 15_000

PAGE_TEXTS = PageTexts()

GUIDE = """## 在手机上读长回答

微信只给公众号 **5 秒** 的回复时间，大模型却常常要想上半分钟。chatgate 把每个回答都存下来，你可以：

1. 回复「1」分段领取；
2. 打开这个页面，看回答*实时*生成；
3. 以后在对话记录里翻看。

### 示例代码

```python
async def answer(question: str) -> AsyncIterator[str]:
    async for chunk in llm.stream(question):
        yield chunk  # 每个片段立刻写入存储，页面随之更新
```

| 方式 | 等待 | 适合 |
|:--|:-:|--:|
| 被动回复 | 15 秒内 | 短回答 |
| 回答页面 | 不限 | 长回答 |

> 提示：链接只给你本人，请不要转发。

很长的网址也会换行：https://example.com/docs/chatgate/answer-pages/a-very-long-path-that-would-overflow-a-phone-screen?with=query&and=more

详见 [项目文档](https://example.com/chatgate)。
"""

HOSTILE = """开头
<script>window.__pwned = "script"; alert("script")</script>

<img src="{tracker}/img.png" onerror="window.__pwned = 'img'; alert('img')">

[点我](javascript:alert('link'))

<a href="javascript:alert('raw')">raw link</a>

![追踪图](TRACKER/pixel.png)

<iframe src="{tracker}/frame"></iframe>

<style>body {{ display: none }}</style>

结尾
"""


# -- the browser ----------------------------------------------------------------------------
@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = CHROMIUM if os.path.isabs(CHROMIUM) else shutil.which(CHROMIUM)
    if executable is None or not os.access(executable, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: the page tests need Debian's chromium "
            "(apt-get install chromium; .ci/run installs it), or CHATGATE_TEST_CHROMIUM "
            "naming another Chromium binary",
            pytrace=False,
        )
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Watched:
    """A phone-sized page and everything it did that a test may want to check."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def requested(self, fragment: str) -> list[str]:
        return [url for url in self.requests if fragment in url]


async def phone_page(browser: Browser, *, dark: bool = False) -> Watched:
    context = await browser.new_context(
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        user_agent=WECHAT_UA,
        locale="zh-CN",
        color_scheme="dark" if dark else "light",
    )
    page = await context.new_page()
    watched = Watched(page)

    async def on_dialog(dialog: Dialog) -> None:
        watched.dialogs.append(dialog.message)
        await dialog.dismiss()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.console_errors.append(message.text)

    def on_request(request: Request) -> None:
        watched.requests.append(request.url)

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    page.on("request", on_request)
    return watched


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


async def answer_text(page: Page) -> str:
    return await page.inner_text("#answer-body")


async def elapsed_seconds(page: Page) -> int:
    found = re.search(r"(\d+) 秒", await page.inner_text("#elapsed"))
    assert found is not None
    return int(found.group(1))


# -- the gateway ----------------------------------------------------------------------------
class ShiftedClock:
    """Real time plus a jump the test adds to: expiry without waiting a day."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Site:
    url: str
    services: Services
    clock: ShiftedClock

    def local(self, link: str | None) -> str:
        """The loopback URL a public link reaches (as the proxy in front would map it)."""
        assert link is not None and link.startswith(PUBLIC + "/"), link
        return self.url + link.removeprefix(PUBLIC)

    async def ask(self, question: str, user: str = "u1") -> AnswerRecord:
        """A user message through the real dispatcher, answer job and LLM (not WeChat)."""
        inbound = Inbound(
            channel="wechat_mp",
            account="gh_sim",
            user=user,
            dedup_key=uuid.uuid4().hex,
            kind=Kind.TEXT,
            text=question,
        )
        return (await self.services.dispatcher.accept(inbound)).answer

    async def finished(self, answer: AnswerRecord) -> AnswerRecord:
        done = await self.services.store.wait_answer(answer.id, 60)
        assert done is not None and done.finished
        return done


@asynccontextmanager
async def site(llm_url: str, **overrides: Any) -> AsyncIterator[Site]:
    clock = ShiftedClock()
    values = gateway_settings(llm_url, public_url=PUBLIC, **overrides)
    settings = load_settings(environ={}, **values)
    app = build_app(settings, store=MemoryStore(clock=clock), clock=clock)
    async with LoopbackServer(app) as server:
        yield Site(server.url, app.state.services, clock)


def scripted(text: str, *, delay: float, ttft: float = 0.5) -> Callable[..., Script]:
    def script(messages: list[dict[str, Any]]) -> Script:
        return Script(text=text, delay=delay, ttft=ttft)

    return script


@dataclass
class LLM:
    sim: FakeLLM
    url: str


@asynccontextmanager
async def fake_llm(script: Callable[..., Script] = plan) -> AsyncIterator[LLM]:
    sim = FakeLLM(script=script)
    async with sim.serve() as url:
        yield LLM(sim, url)


# -- done when: a late answer read live in the browser --------------------------------------
@pytest.mark.slow
async def test_a_late_answer_is_read_live_from_the_link_in_the_placeholder(
    browser: Browser,
) -> None:
    """WeChat's 3 tries run out, the placeholder carries the link, the page streams the rest."""
    async with (
        fake_llm(scripted(GUIDE, delay=24, ttft=1)) as llm,
        gateway_in_process(llm.url, public_url=PUBLIC) as gw,
    ):
        sim = WeChatSim(gw.wechat_url, TOKEN)
        outcome = await sim.send_text("u1", "怎样在手机上读长回答？")
        assert outcome.kind == "reply" and outcome.tries == 3
        found = re.search(re.escape(PUBLIC) + r"/a/[A-Za-z0-9_-]{32}", outcome.text or "")
        assert found is not None, outcome.text
        link = found.group(0)
        assert outcome.text == Texts().thinking_with_link.format(link=link)

        watched = await phone_page(browser)
        page = watched.page
        await page.goto(gw.url + link.removeprefix(PUBLIC))
        assert await page.get_attribute("#answer", "data-finished") == "0"
        assert await page.inner_text(".question-text") == "怎样在手机上读长回答？"
        assert await page.inner_text("#status-label") == PAGE_TEXTS.writing
        shown = len(await answer_text(page))
        thinking_for = await elapsed_seconds(page)
        assert thinking_for >= 10  # it has been thinking since the first try

        # The text grows while the model streams, and the thinking time counts on.
        await page.wait_for_function(
            "n => document.getElementById('answer-body').innerText.length > n",
            arg=shown,
            timeout=SOON_MS,
        )
        await page.wait_for_function(
            "n => parseInt(document.getElementById('elapsed').innerText.match(/\\d+/)[0]) > n",
            arg=thinking_for,
            timeout=SOON_MS,
        )
        await page.screenshot(path=artifact("answer-page-streaming.png"))

        await page.wait_for_selector("#answer[data-finished='1']", timeout=30_000)
        assert await page.inner_text("#status-label") == PAGE_TEXTS.done
        assert await page.inner_text("#answer-body h2") == "在手机上读长回答"
        assert await page.inner_text("#answer-body strong") == "5 秒"
        assert "async for chunk in llm.stream(question):" in await page.inner_text(
            "#answer-body pre code"
        )
        assert await page.locator("#answer-body ol > li").count() == 3
        assert await page.locator("#answer-body td").count() == 6
        docs = page.locator("#answer-body a", has_text="项目文档")
        assert await docs.get_attribute("href") == "https://example.com/chatgate"
        assert (await answer_text(page)).rstrip().endswith("详见 项目文档。")
        # Nothing overflows the phone's width: long lines wrap, code scrolls in its box.
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        await page.screenshot(path=artifact("answer-page.png"), full_page=True)

        assert watched.requested("/events") and not watched.requested("/state")
        assert watched.console_errors == [] and watched.page_errors == []
        assert watched.dialogs == []
    assert len(llm.sim.calls) == 1


# -- nothing the model writes runs ----------------------------------------------------------
@asynccontextmanager
async def tracker() -> AsyncIterator[tuple[str, list[str]]]:
    """A server that records every request: anything the page loads from it is a leak."""
    hits: list[str] = []

    async def record(request: StarletteRequest) -> Response:
        hits.append(request.url.path)
        return PlainTextResponse("gotcha")

    app = Starlette(routes=[Route("/{path:path}", record)])
    async with LoopbackServer(app) as server:
        yield server.url, hits


async def test_model_markup_renders_as_text_and_runs_nothing(browser: Browser) -> None:
    async with tracker() as (tracker_url, hits):
        hostile = HOSTILE.format(tracker=tracker_url).replace("TRACKER", tracker_url)
        async with (
            fake_llm(scripted(hostile, delay=3)) as llm,
            site(llm.url) as gw,
        ):
            answer = await gw.ask("请原样输出这些标签")
            watched = await phone_page(browser)
            page = watched.page
            # Opened while streaming: both the first render and the live updates are checked.
            await page.goto(gw.local(gw.services.links.answer_link(answer)))
            await page.wait_for_selector("#answer[data-finished='1']", timeout=SOON_MS)
            await page.click("text=点我")
            text = await answer_text(page)
            await page.screenshot(path=artifact("answer-page-hostile.png"), full_page=True)
            dom = await page.evaluate(
                """() => {
                    const body = document.getElementById('answer-body');
                    const all = [...body.querySelectorAll('*')];
                    return {
                        pwned: window.__pwned === undefined ? null : String(window.__pwned),
                        scripts: document.querySelectorAll('script:not([src])').length,
                        loaded: body.querySelectorAll('img, iframe, style, object, embed').length,
                        handlers: all.flatMap(e => [...e.attributes].map(a => a.name))
                            .filter(n => n.startsWith('on')),
                        hrefs: [...body.querySelectorAll('a[href]')].map(a => a.href),
                        visible: getComputedStyle(document.body).display,
                    };
                }"""
            )
    assert dom["pwned"] is None and watched.dialogs == []
    assert dom["scripts"] == 0 and dom["loaded"] == 0 and dom["handlers"] == []
    assert dom["hrefs"] == [f"{tracker_url}/pixel.png"]  # the image, as a plain link
    assert dom["visible"] != "none"
    assert "<script>" in text and "onerror=" in text and "javascript:alert('link')" in text
    assert "[图片] 追踪图" in text and text.strip().endswith("结尾")
    assert hits == []  # no image, frame or anything else was fetched from the model's URLs
    assert all(url.startswith(gw.url) for url in watched.requests)
    assert watched.page_errors == [] and watched.console_errors == []


# -- tokens ---------------------------------------------------------------------------------
async def test_unknown_and_expired_tokens_get_identical_404s(browser: Browser) -> None:
    async with fake_llm() as llm, site(llm.url) as gw:
        answer = await gw.finished(await gw.ask("过期前能看"))
        answer_url = gw.local(gw.services.links.answer_link(answer))
        history_url = gw.local(await gw.services.links.history_link(answer.conversation))
        watched = await phone_page(browser)
        page = watched.page

        async def visit(url: str) -> tuple[int, bytes, dict[str, str], str]:
            response = await page.goto(url)
            assert response is not None
            headers = {k: v for k, v in (await response.all_headers()).items() if k != "date"}
            return response.status, await response.body(), headers, await page.content()

        assert (await visit(answer_url))[0] == 200
        assert (await visit(history_url))[0] == 200
        unknown = [
            await visit(f"{gw.url}/a/{'A' * 22}"),
            await visit(f"{gw.url}/h/{'B' * 22}"),
            await visit(f"{gw.url}/a/short"),
        ]
        gw.clock.offset += gw.services.settings.answer_ttl + 1
        expired = [await visit(answer_url), await visit(history_url)]
        async with httpx.AsyncClient() as client:
            feed = await client.get(answer_url + "/state")
            events = await client.get(answer_url + "/events")
    first = unknown[0]
    assert first[0] == 404 and first[1] == b"Not Found"
    assert all(other == first for other in unknown + expired)
    for response in (feed, events):
        assert (response.status_code, response.content) == (404, b"Not Found")


# -- fallbacks and looks --------------------------------------------------------------------
@pytest.mark.parametrize("breakage", ["events-blocked", "no-eventsource"])
async def test_page_falls_back_to_polling_when_server_sent_events_fail(
    browser: Browser, breakage: str
) -> None:
    text = "".join(f"第{i}句，慢慢来。" for i in range(1, 40))
    async with (
        fake_llm(scripted(text, delay=5)) as llm,
        site(llm.url) as gw,
    ):
        answer = await gw.ask("慢慢说")
        watched = await phone_page(browser)
        page = watched.page
        if breakage == "events-blocked":
            await page.route("**/events", lambda route: route.abort())
        else:
            await page.add_init_script("delete window.EventSource;")
        await page.goto(gw.local(gw.services.links.answer_link(answer)))
        await page.wait_for_selector("#answer[data-finished='1']", timeout=SOON_MS)
        final = await answer_text(page)
    assert final == text
    assert len(watched.requested("/state")) >= 2  # it polled, more than once
    assert watched.dialogs == [] and watched.page_errors == []


async def test_dark_scheme_renders_dark_and_light_renders_light(browser: Browser) -> None:
    async with (
        fake_llm(scripted(GUIDE, delay=0.5)) as llm,
        site(llm.url) as gw,
    ):
        answer = await gw.finished(await gw.ask("深色模式"))
        url = gw.local(gw.services.links.answer_link(answer))
        colours = {}
        for dark in (False, True):
            watched = await phone_page(browser, dark=dark)
            await watched.page.goto(url)
            await watched.page.wait_for_selector("#answer[data-finished='1']")
            colours[dark] = await watched.page.evaluate(
                """() => {
                    const get = (sel, prop) => getComputedStyle(document.querySelector(sel))[prop];
                    const bg = 'backgroundColor';
                    return [get('body', bg), get('body', 'color'),
                            get('#answer-body', bg), get('#answer-body pre', bg)];
                }"""
            )
            name = "answer-page-dark.png" if dark else "answer-page-light.png"
            await watched.page.screenshot(path=artifact(name), full_page=True)
            assert watched.console_errors == []
    light, dark_ = ([luminance(c) for c in colours[d]] for d in (False, True))
    assert light[0] > 0.8 and light[1] < 0.2 and light[2] > 0.8
    assert dark_[0] < 0.1 and dark_[1] > 0.7 and dark_[2] < 0.15 and dark_[3] < 0.15


def luminance(css: str) -> float:
    found = re.match(r"rgba?\((\d+), (\d+), (\d+)", css)
    assert found is not None, css
    r, g, b = (int(v) / 255 for v in found.groups())
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


# -- the history page -----------------------------------------------------------------------
async def test_history_page_newest_at_the_bottom_pages_back_and_links_running_answers(
    browser: Browser,
) -> None:
    def script(messages: list[dict[str, Any]]) -> Script:
        question = user_texts(messages)[-1]
        if "还在想" in question:
            return Script(text="慢慢想好了。", delay=20)
        return Script(text=f"**回答**：{question}", delay=0)

    async with fake_llm(script) as llm, site(llm.url) as gw:
        answers = [await gw.ask(f"第{i}个问题") for i in range(1, 13)]
        for answer in answers:
            await gw.finished(answer)
        running = await gw.ask("还在想的问题")
        link = await gw.services.links.history_link(running.conversation)
        assert link == await gw.services.links.history_link(running.conversation)
        watched = await phone_page(browser)
        page = watched.page
        await page.goto(gw.local(link))
        questions = await page.locator(".turn.user .bubble").all_inner_texts()
        replies = await page.locator(".turn.assistant .bubble").all_inner_texts()
        assert questions == [f"第{i}个问题" for i in range(3, 13)]  # the 10 newest exchanges
        assert replies[-1].strip() == "回答：第12个问题"
        # Times in the reader's zone, shown once per quiet spell as chat apps do.
        assert await page.locator(".turn time:visible").count() == 1
        assert re.fullmatch(r"\d+/\d+ \d\d:\d\d", await page.inner_text(".turn time >> nth=0"))
        assert await page.evaluate(
            "window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 2"
        )
        assert await page.inner_text(".pending") == (
            f"{PAGE_TEXTS.pending_title}\n还在想的问题 {PAGE_TEXTS.open_answer}"
        )
        await page.screenshot(path=artifact("history-page.png"))

        await page.click("#older")
        older = await page.locator(".turn.user .bubble").all_inner_texts()
        assert older == ["第1个问题", "第2个问题"]
        assert await page.locator("#older").count() == 0
        await page.click("#newest")
        assert await page.locator(".turn.user .bubble").last.inner_text() == "第12个问题"

        await page.click(f".pending a >> text={PAGE_TEXTS.open_answer}")
        await page.wait_for_selector("#answer")
        assert await page.inner_text(".question-text") == "还在想的问题"
        assert await page.get_attribute("#answer", "data-finished") == "0"
        assert watched.console_errors == [] and watched.page_errors == []
        # Stop the slow answer now rather than waiting out the shutdown grace for it.
        await gw.services.supervisor.drain(0.1)


# -- links in replies -----------------------------------------------------------------------
async def test_first_part_of_a_long_answer_links_to_the_whole_answer() -> None:
    async with fake_llm() as llm, site(llm.url) as gw:
        sim = WeChatSim(gw.url + gw.services.settings.wechat_path, TOKEN)
        question = "长回答 [len=6000]"
        first = await sim.send_text("u1", question)
        text = first.text or ""
        found = re.search(re.escape(PUBLIC) + r"/a/[A-Za-z0-9_-]{32}", text)
        assert found is not None, text
        assert text.endswith(Texts().more_with_link.format(link=found.group(0)))
        assert len(text.encode()) <= 2048
        async with httpx.AsyncClient() as client:
            state = (await client.get(gw.local(found.group(0)) + "/state")).json()
    whole = llm.sim.expected_answer([{"role": "user", "content": question}])
    assert state["finished"] is True
    last_paragraph = whole.rsplit("\n\n", 1)[1]
    assert last_paragraph in state["html"]


async def test_without_a_public_url_the_log_says_so_once_and_replies_carry_no_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with fake_llm() as llm:
        with caplog.at_level("WARNING"):
            async with gateway_in_process(llm.url) as gw:
                sim = WeChatSim(gw.wechat_url, TOKEN)
                first = await sim.send_text("u1", "长回答 [len=6000]")
    warnings = [r for r in caplog.records if "CHATGATE_PUBLIC_URL" in r.getMessage()]
    assert len(warnings) == 1
    assert (first.text or "").endswith(Texts().more)
    assert "http" not in (first.text or "")


async def test_pages_are_served_even_without_links_in_replies() -> None:
    async with fake_llm() as llm, gateway_in_process(llm.url) as gw:
        unknown = f"{gw.url}/a/{'C' * 22}"
        async with httpx.AsyncClient() as client:
            response = await client.get(unknown)
    assert response.status_code == 404
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


async def test_event_stream_serves_a_live_answer_over_real_http() -> None:
    async with (
        fake_llm(scripted("一二三四五六七八九十" * 8, delay=3)) as llm,
        site(llm.url) as gw,
    ):
        answer = await gw.ask("流")
        url = gw.local(gw.services.links.answer_link(answer)) + "/events"
        frames: list[str] = []
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream("GET", url) as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    frames.append(line)
    assert len(frames) >= 3  # several updates while it streamed, then the final one
    assert '"finished":true' in frames[-1]
    assert all('"finished":false' in f for f in frames[:-1])
