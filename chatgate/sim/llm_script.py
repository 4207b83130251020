"""What the fake LLM answers, and how: a pure function of the request's messages.

Inline directives in the last user message steer it:
  [delay=9]    the whole answer takes about 9 s (streamed: first chunk at `ttft`, the rest spread)
  [ttft=2]     the first content chunk comes after 2 s (capped by the delay)
  [len=6000]   the answer is exactly 6000 UTF-8 bytes of numbered Chinese paragraphs and sentences
  [fail=500]   answer HTTP 500 (any status); [fail=429x1] fail the first call(s) only, then answer
  [hang]       never finish
Without [len], the answer echoes the question; a question containing 「刚才」 or "previous" is
answered by quoting the user message before it, so a test can see that context was kept.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

_DIRECTIVE = re.compile(r"\[(delay|ttft|len|fail|hang)(?:=([^\]\s]+))?\]")
_FAIL = re.compile(r"([1-5]\d\d)(?:x(\d+))?")
_PREVIOUS = re.compile(r"刚才|previous", re.IGNORECASE)

_SENTENCES = (
    "模拟器按段落和句子生成这段文字，好让网关测试自然边界上的切分",
    "每一句都以句号结尾，每一段之间空一行",
    "句子前面的编号标明它在整段回答中的位置，拼接后顺序一目了然",
    "如果有一句丢了或者重复了，对照编号马上就能发现",
    "中文字符在UTF-8里占三个字节，所以字节数和字数并不相同",
)
_SENTENCES_PER_PARAGRAPH = 4


@dataclass(frozen=True)
class Script:
    """One call's behaviour. `None` timings fall back to the FakeLLM's defaults."""

    text: str
    delay: float | None = None
    ttft: float | None = None
    fail: int | None = None
    # With `fail`: how many calls with the same last user message fail; None = all of them.
    fail_times: int | None = None
    hang: bool = False


def content_text(message: dict[str, Any]) -> str:
    """A message's text, whether `content` is a string or a list of typed parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def user_texts(messages: list[dict[str, Any]]) -> list[str]:
    return [content_text(m) for m in messages if m.get("role") == "user"]


def strip_directives(text: str) -> str:
    return re.sub(r"\s{2,}", " ", _DIRECTIVE.sub("", text)).strip()


def filler(n_bytes: int) -> str:
    """Exactly `n_bytes` UTF-8 bytes of numbered sentences in paragraphs (ASCII dots pad it)."""
    paragraphs: list[str] = []
    size = 0
    while size < n_bytes:
        p = len(paragraphs) + 1
        paragraph = "".join(
            f"（{p}.{s}）{_SENTENCES[(p + s) % len(_SENTENCES)]}。"
            for s in range(1, _SENTENCES_PER_PARAGRAPH + 1)
        )
        paragraphs.append(paragraph)
        size += len(paragraph.encode()) + 2
    whole = "\n\n".join(paragraphs).encode()[:n_bytes]
    # The cut may split a character; drop its bytes and pad so the length stays exact.
    text = whole.decode(errors="ignore")
    return text + "." * (n_bytes - len(text.encode()))


def answer_text(messages: list[dict[str, Any]], length: int | None = None) -> str:
    if length is not None:
        return filler(length)
    users = user_texts(messages)
    question = strip_directives(users[-1]) if users else ""
    if _PREVIOUS.search(question):
        if len(users) < 2:
            return "你之前没有说过别的话。"
        return f"你刚才说：{strip_directives(users[-2])}"
    return f"你问：{question}。这是模拟回答。"


def plan(messages: list[dict[str, Any]]) -> Script:
    """The Script the directives in the last user message ask for."""
    users = user_texts(messages)
    found = dict(_DIRECTIVE.findall(users[-1])) if users else {}
    length = int(found["len"]) if found.get("len", "").isdigit() else None
    fail = fail_times = None
    if match := _FAIL.fullmatch(found.get("fail", "")):
        fail = int(match.group(1))
        fail_times = int(match.group(2)) if match.group(2) else None
    return Script(
        text=answer_text(messages, length),
        delay=_seconds(found.get("delay")),
        ttft=_seconds(found.get("ttft")),
        fail=fail,
        fail_times=fail_times,
        hang="hang" in found,
    )


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


async def paced(text: str, delay: float, ttft: float, size: int) -> AsyncIterator[str]:
    """`text` in pieces of `size` characters, the first at `ttft`, the rest spread evenly.

    Always at least one (possibly empty) piece; ends once `delay` has passed since the start.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
    for i, piece in enumerate(pieces):
        due = start + ttft + (delay - ttft) * i / len(pieces)
        await asyncio.sleep(max(0.0, due - loop.time()))
        yield piece
    await asyncio.sleep(max(0.0, start + delay - loop.time()))
