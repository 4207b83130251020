"""A fake OpenAI-compatible LLM server: scripted answers, delays and failures; every call logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from chatgate.sim.dify import FakeDify
from chatgate.sim.llm_script import Script, content_text, paced, plan, user_texts
from chatgate.sim.server import LoopbackServer

__all__ = ["FakeDify", "FakeLLM", "LLMCall", "Script", "ScriptHook"]

ScriptHook = Callable[[list[dict[str, Any]]], Script]


@dataclass(frozen=True)
class LLMCall:
    """One request as received; `at` is Unix time, `api` is "openai" or "dify"."""

    at: float
    body: dict[str, Any]
    api: str = "openai"

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "api": self.api, "body": self.body}

    @property
    def question(self) -> str:
        """The user's new message: the last user message, or Dify's `query`."""
        if self.api == "dify":
            return str(self.body.get("query", ""))
        messages = [m for m in self.body.get("messages", []) if isinstance(m, dict)]
        users = user_texts(messages)
        return users[-1] if users else ""


def _error(status: int, message: str) -> JSONResponse:
    error = {"message": message, "type": "sim_error", "param": None, "code": str(status)}
    return JSONResponse({"error": error}, status_code=status)


def _sse(payload: dict[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n"


async def _forever() -> None:
    await asyncio.Event().wait()


class FakeLLM:
    """`async with FakeLLM().serve() as base_url:` gives an OpenAI-compatible `.../v1`.

    The same `.../v1` also serves Dify's `/chat-messages` (see `chatgate.sim.dify`), scripted
    by the same directives and logged in the same `calls`. `delay` and `ttft` are the
    defaults for messages without [delay] / [ttft]; `script` replaces the directive parser
    for programmatic control.
    """

    def __init__(
        self,
        *,
        script: ScriptHook | None = None,
        delay: float = 0.0,
        ttft: float = 0.5,
        chunk_chars: int = 8,
        model: str = "sim-llm",
    ) -> None:
        if chunk_chars < 1:
            raise ValueError("chunk_chars must be at least 1")
        self.calls: list[LLMCall] = []
        self.model = model
        self._script = script or plan
        self._delay = delay
        self._ttft = ttft
        self._chunk_chars = chunk_chars
        # Failures served so far per last user message, for [fail=429x1].
        self._failed: Counter[str] = Counter()
        self.dify = FakeDify(self)
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/chat-messages", self.dify.chat_messages, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/_sim/calls", self._calls, methods=["GET"]),
                Route("/_sim/reset", self._reset, methods=["POST"]),
            ]
        )

    def script_for(self, messages: list[dict[str, Any]]) -> Script:
        return self._script(messages)

    def expected_answer(self, messages: list[dict[str, Any]]) -> str:
        """The exact text a successful call with these messages answers."""
        return self.script_for(messages).text

    def reset(self) -> None:
        self.calls.clear()
        self._failed.clear()
        self.dify.forget()

    def record(self, body: dict[str, Any], api: str = "openai") -> None:
        self.calls.append(LLMCall(time.time(), body, api))

    def timing(self, script: Script) -> tuple[float, float]:
        """The (delay, ttft) a call with `script` gets: its directives, else the defaults."""
        delay = self._delay if script.delay is None else script.delay
        return delay, min(delay, self._ttft if script.ttft is None else script.ttft)

    def chunk_chars(self) -> int:
        return self._chunk_chars

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Serve on a free loopback port; yields the base URL ending in /v1."""
        async with LoopbackServer(self.app) as server:
            yield f"{server.url}/v1"

    def should_fail(self, script: Script, messages: list[dict[str, Any]]) -> bool:
        """Whether this call fails as [fail] asks; counts it against a [fail=NxK] budget."""
        if script.fail is None:
            return False
        if script.fail_times is None:
            return True
        users = user_texts(messages)
        key = users[-1] if users else ""
        if self._failed[key] >= script.fail_times:
            return False
        self._failed[key] += 1
        return True

    async def _chat(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' must be a list")
        self.record(body)
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        script = self.script_for(messages)
        delay, ttft = self.timing(script)
        requested = body.get("model")
        model = requested if isinstance(requested, str) else self.model
        stream = body.get("stream") is True
        if script.hang:
            if stream:
                return StreamingResponse(self._hang_stream(), media_type="text/event-stream")
            await _forever()
        if self.should_fail(script, messages):
            await asyncio.sleep(delay)
            assert script.fail is not None
            return _error(script.fail, f"simulated failure {script.fail}")
        completion_id = f"chatcmpl-sim-{len(self.calls)}"
        usage = _usage(messages, script.text)
        if stream:
            options = body.get("stream_options")
            with_usage = isinstance(options, dict) and options.get("include_usage") is True
            chunks = self._chunks(
                completion_id, model, script.text, delay, ttft, usage if with_usage else None
            )
            return StreamingResponse(chunks, media_type="text/event-stream")
        await asyncio.sleep(delay)
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": script.text},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )

    async def _hang_stream(self) -> AsyncIterator[str]:
        # Headers go out, then nothing ever: a provider stalled before its first token.
        await _forever()
        yield ""  # pragma: no cover - never reached

    async def _chunks(
        self,
        completion_id: str,
        model: str,
        text: str,
        delay: float,
        ttft: float,
        usage: dict[str, int] | None,
    ) -> AsyncIterator[str]:
        created = int(time.time())

        def chunk(delta: dict[str, str], finish: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }

        first = True
        # First piece at ttft, the rest spread evenly so the stop chunk lands at `delay`.
        async for piece in paced(text, delay, ttft, self._chunk_chars):
            delta = {"role": "assistant", "content": piece} if first else {"content": piece}
            first = False
            yield _sse(chunk(delta, None))
        yield _sse(chunk({}, "stop"))
        if usage is not None:
            yield _sse({**chunk({}, None), "choices": [], "usage": usage})
        yield _sse("[DONE]")

    async def _models(self, request: Request) -> Response:
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "chatgate-sim"}
        return JSONResponse({"object": "list", "data": [model]})

    async def _calls(self, request: Request) -> Response:
        return JSONResponse([call.to_json() for call in self.calls])

    async def _reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})


def _usage(messages: list[dict[str, Any]], answer: str) -> dict[str, int]:
    # One "token" per character: plausible numbers without a tokenizer.
    prompt = sum(len(content_text(m)) for m in messages)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": len(answer),
        "total_tokens": prompt + len(answer),
    }
