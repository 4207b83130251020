"""Log lines: one per event, JSON or text, with the message context; no secrets, no message text."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from chatgate.app.logs import MASK, configure_logging, make_handler
from chatgate.core.logcontext import log_scope
from chatgate.sim.wechat import WeChatSim
from tests.app.support import serve_app
from tests.e2e.harness import AES_KEY, APPID, TOKEN


def record(
    msg: str, *args: object, level: int = logging.INFO, **extra: object
) -> logging.LogRecord:
    rec = logging.LogRecord("chatgate.test", level, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


@contextmanager
def captured(
    fmt: str = "json", level: int = logging.INFO, secrets: tuple[str, ...] = ()
) -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = make_handler(fmt, secrets, out)  # type: ignore[arg-type]
    logger = logging.getLogger("chatgate")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def test_a_json_line_carries_the_context_extras_and_the_traceback_on_one_line() -> None:
    out = io.StringIO()
    handler = make_handler("json", stream=out)
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        rec = record("answer %s failed", "a1", attempt=2)
        rec.exc_info = sys.exc_info()
    with log_scope(channel="wechat_mp", message_id="m1", conversation="wechat_mp:gh:u"):
        handler.handle(rec)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "info" and entry["logger"] == "chatgate.test"
    assert entry["msg"] == "answer a1 failed"
    assert entry["channel"] == "wechat_mp" and entry["message_id"] == "m1"
    assert entry["conversation"] == "wechat_mp:gh:u" and "answer_id" not in entry
    assert entry["attempt"] == 2
    assert "ValueError: boom" in entry["exc"]
    assert entry["ts"].endswith("+00:00")


def test_a_text_line_ends_with_its_context() -> None:
    out = io.StringIO()
    handler = make_handler("text", stream=out)
    with log_scope(channel="dingtalk", message_id="m2"):
        handler.handle(record("try %d joins", 3))
    handler.handle(record("no context here"))
    first, second = out.getvalue().splitlines()
    assert first.endswith("chatgate.test: try 3 joins [channel=dingtalk message_id=m2]")
    assert second.endswith("chatgate.test: no context here")


def test_secrets_are_masked_in_both_formats() -> None:
    for fmt in ("json", "text"):
        out = io.StringIO()
        handler = make_handler(fmt, ["sk-live-abcdef123", "abc"], out)  # type: ignore[arg-type]
        handler.handle(record("calling with key %s and abc", "sk-live-abcdef123"))
        line = out.getvalue()
        assert "sk-live-abcdef123" not in line and MASK in line
        assert "and abc" in line  # too short to be a real secret: not masked


def test_page_tokens_in_access_lines_are_masked_in_both_formats() -> None:
    token = "Zq3xY_9-AbCdEfGhIjKlMn"
    line = '127.0.0.1:5000 - "GET /a/%s/events HTTP/1.1" 200'
    for fmt in ("json", "text"):
        with captured(fmt) as out:
            logging.getLogger("chatgate.access").info(line, token)
            logging.getLogger("chatgate.access").info('"GET /h/%s?before=1 HTTP/1.1" 200', token)
        text = out.getvalue()
        assert token not in text
        assert f"/a/{MASK}/events" in text and f"/h/{MASK}?before=1" in text


def test_configure_logging_replaces_the_root_handlers_and_quiets_http_clients() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    out = io.StringIO()
    try:
        configure_logging("info", "json", stream=out)
        logging.getLogger("uvicorn.error").info(
            "Started server process", extra={"color_message": "Started \x1b[36m…"}
        )
        logging.getLogger("httpx").info("HTTP Request: GET https://api/?access_token=t")
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        logging.getLogger("httpx").setLevel(logging.NOTSET)
    assert [line["logger"] for line in lines] == ["uvicorn.error"]
    assert "color_message" not in lines[0]


async def test_a_conversation_logs_no_message_text_and_no_secret_at_info() -> None:
    question, secret_key = "我的身份证号是什么机密问题", "sk-test-never-logged-42"
    with captured("text", logging.INFO) as out:
        async with serve_app(wechat_aes_key=AES_KEY, llm_api_key=secret_key) as gw:
            sim = WeChatSim(gw.wechat_url, TOKEN, appid=APPID, aes_key=AES_KEY)
            outcome = await sim.send_text("u1", question)
            await sim.send_text("u1", "1")
    assert outcome.kind == "reply" and outcome.text
    logged = out.getvalue()
    assert "message_id=" in logged  # the conversation was logged, with its context
    for forbidden in (question, outcome.text, secret_key, AES_KEY, TOKEN):
        assert forbidden not in logged


async def test_debug_level_may_show_message_text() -> None:
    with captured("json", logging.DEBUG) as out:
        async with serve_app() as gw:
            await WeChatSim(gw.wechat_url, TOKEN).send_text("u1", "调试时可见的问题")
    assert "调试时可见的问题" in out.getvalue()
