"""An offline, deterministic provider for demos and tests, scripted by inline directives.

The answer echoes the last user message: 「（演示回答）你说的是：…」 and a sentence more. If that
message contains 「刚才」, the answer quotes the user's previous message, which shows that the
conversation's context reached the provider. Directives anywhere in the last user message
(removed from the echo) script the answer, as with the simulator's fake LLM:

- ``[delay=N]``: the whole answer takes N seconds (float), spread over its chunks;
- ``[len=N]``: the answer is exactly N bytes of UTF-8 (padded or cut);
- ``[fail]``: after the delay, raise ``ProviderError`` instead of answering.

Values are capped (``MAX_DELAY``, ``MAX_LEN``) because demo users can type directives too.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from chatgate.errors import ProviderError
from chatgate.providers.base import ChatMessage, ChatRequest

MAX_DELAY = 300.0
MAX_LEN = 100_000
# Long answers get longer chunks so that no answer needs more than about this many.
_MAX_CHUNKS = 40
_MIN_CHUNK_CHARS = 8

_DIRECTIVE = re.compile(
    r"\[\s*(?:(?P<key>delay|len)\s*=\s*(?P<value>\d+(?:\.\d+)?)|(?P<fail>fail))\s*\]",
    re.IGNORECASE,
)
_SENTENCE_ENDS = "。！？!?.…~～"
_FILLER = "这是离线演示模型为凑足长度而写的第{n}句话。"


@dataclass(frozen=True, slots=True)
class Directives:
    delay: float | None = None
    length: int | None = None
    fail: bool = False


@dataclass(frozen=True, slots=True)
class FakePlan:
    """What ``stream`` will do: wait ``first_delay``, then yield ``chunks`` ``chunk_delay`` apart.

    With ``fail`` there are no chunks: it raises after ``first_delay``.
    """

    chunks: tuple[str, ...]
    first_delay: float
    chunk_delay: float
    fail: bool = False

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def total_delay(self) -> float:
        return self.first_delay + self.chunk_delay * max(len(self.chunks) - 1, 0)


class FakeProvider:
    """Streams a canned answer built from the conversation; never touches the network."""

    name: str = "fake"

    def __init__(self, *, delay: float = 0.0, chunk_delay: float = 0.02) -> None:
        if delay < 0 or chunk_delay < 0:
            raise ValueError("delays must not be negative")
        self.delay = delay
        self.chunk_delay = chunk_delay

    def plan(self, request: ChatRequest) -> FakePlan:
        """The answer and its timing for ``request``; the same request gives the same plan."""
        users = [message for message in request.messages if message.role == "user"]
        last = users[-1] if users else ChatMessage(role="user", content="")
        said, directives = parse_directives(last.content)
        previous = parse_directives(users[-2].content)[0] if len(users) > 1 else None

        if directives.fail:
            delay = self.delay if directives.delay is None else directives.delay
            return FakePlan(chunks=(), first_delay=delay, chunk_delay=0.0, fail=True)

        text = compose_answer(said, previous, len(last.images))
        if directives.length is not None:
            text = fit_bytes(text, directives.length)
        chunks = split_chunks(text)
        if directives.delay is None:
            return FakePlan(chunks, self.delay, self.chunk_delay)
        # Spread the requested time evenly: the first chunk arrives after one share of it.
        share = directives.delay / max(len(chunks), 1)
        return FakePlan(chunks, share, share)

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        plan = self.plan(request)
        if plan.first_delay > 0:
            await asyncio.sleep(plan.first_delay)
        if plan.fail:
            raise ProviderError("fake provider: failure requested by [fail]")
        for index, chunk in enumerate(plan.chunks):
            if index and plan.chunk_delay > 0:
                await asyncio.sleep(plan.chunk_delay)
            yield chunk

    async def aclose(self) -> None:
        return None


def parse_directives(text: str) -> tuple[str, Directives]:
    """``text`` without its directives (trimmed), and the directives it held (last one wins)."""
    delay: float | None = None
    length: int | None = None
    fail = False
    for match in _DIRECTIVE.finditer(text):
        if match["fail"]:
            fail = True
        elif match["key"].lower() == "delay":
            delay = min(float(match["value"]), MAX_DELAY)
        else:
            length = min(int(float(match["value"])), MAX_LEN)
    stripped = " ".join(_DIRECTIVE.sub(" ", text).split())
    return stripped, Directives(delay=delay, length=length, fail=fail)


def compose_answer(said: str, previous: str | None, images: int = 0) -> str:
    """The demo answer to ``said``; ``previous`` is the user's message before it, if any."""
    opening = f"你说的是：{_sentence(said)}" if said else "你这次没有写文字。"
    parts = [f"（演示回答）{opening}"]
    if images:
        parts.append(f"我还收到了 {images} 张图片。")
    if "刚才" in said:
        if previous:
            parts.append(f"你刚才说的是：「{previous}」——上下文还在。")
        else:
            parts.append("不过在这之前你还没说过别的。")
    else:
        parts.append(
            "这是离线演示模型的回答，没有调用真正的大模型。它会分成几段，像真模型一样流式返回。"
        )
    return "".join(parts)


def _sentence(text: str) -> str:
    return text if text[-1] in _SENTENCE_ENDS else text + "。"


def fit_bytes(text: str, size: int) -> str:
    """``text`` cut or extended to exactly ``size`` bytes of UTF-8, on character boundaries."""
    parts = [text]
    total = len(text.encode())
    while total < size:
        parts.append(_FILLER.format(n=len(parts)))
        total += len(parts[-1].encode())
    cut = "".join(parts).encode()[:size].decode(errors="ignore")
    # A multi-byte character cut in half leaves up to 3 bytes short: pad with ASCII.
    return cut + "." * (size - len(cut.encode()))


def split_chunks(text: str) -> tuple[str, ...]:
    """``text`` in several chunks of equal length (the last may be shorter)."""
    if not text:
        return ()
    size = max(_MIN_CHUNK_CHARS, math.ceil(len(text) / _MAX_CHUNKS))
    return tuple(text[i : i + size] for i in range(0, len(text), size))
