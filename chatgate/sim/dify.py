"""A fake Dify chat app: ``POST /v1/chat-messages``, with conversations it issues and remembers.

Served by ``FakeLLM`` beside its OpenAI-compatible API and scripted by the same directives in
the question ([delay] [ttft] [len] [fail=…] [hang]), with every call logged in ``FakeLLM.calls``
(``api == "dify"``). Like real Dify, it keeps each conversation's messages itself: a request
carries only the new ``query``, and the answer is planned from the remembered messages plus that
query — so a question with 「刚才」 quotes the previous query *of that Dify conversation*, which
shows whether the gateway kept the ``conversation_id``. An unknown ``conversation_id`` (or one
``forget`` dropped, as Dify's console can) gets Dify's 404 ``Conversation Not Exists.``.

Errors have Dify's shape, ``{"code", "message", "status"}``. A streamed answer is Dify's SSE:
a ``ping``, ``message`` events carrying ``answer`` pieces and the ``conversation_id``, then
``message_end``. ``response_mode: blocking`` answers one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from chatgate.sim.llm_script import paced

if TYPE_CHECKING:
    from chatgate.sim.llm import FakeLLM


@dataclass
class DifyConversation:
    """What the fake Dify remembers of one conversation."""

    id: str
    user: str
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def queries(self) -> list[str]:
        return [str(m["content"]) for m in self.messages if m["role"] == "user"]


def dify_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "status": status}, status_code=status)


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


class FakeDify:
    """The Dify half of a ``FakeLLM``; ``conversations`` maps ids to what was said in them."""

    def __init__(self, llm: FakeLLM) -> None:
        self._llm = llm
        self.conversations: dict[str, DifyConversation] = {}

    def forget(self, conversation_id: str | None = None) -> None:
        """Drop one conversation, or all: the next request naming it gets a 404."""
        if conversation_id is None:
            self.conversations.clear()
        else:
            self.conversations.pop(conversation_id, None)

    async def chat_messages(self, request: Request) -> Response:
        if not request.headers.get("authorization", "").removeprefix("Bearer ").strip():
            return dify_error(401, "unauthorized", "Access token is invalid")
        try:
            body = await request.json()
        except ValueError:
            return dify_error(400, "invalid_param", "the body is not JSON")
        problem = _invalid(body)
        if problem:
            return dify_error(400, "invalid_param", problem)
        self._llm.record(body, api="dify")
        conversation_id = body.get("conversation_id") or ""
        known = self.conversations.get(conversation_id)
        if conversation_id and (known is None or known.user != body["user"]):
            return dify_error(404, "not_found", "Conversation Not Exists.")
        history = known.messages if known is not None else []
        messages = [*history, {"role": "user", "content": body["query"]}]
        script = self._llm.script_for(messages)
        delay, ttft = self._llm.timing(script)
        streaming = body["response_mode"] == "streaming"
        if script.hang:
            if streaming:
                return StreamingResponse(_hang(), media_type="text/event-stream")
            await asyncio.Event().wait()
        if self._llm.should_fail(script, messages):
            await asyncio.sleep(delay)
            assert script.fail is not None
            return dify_error(script.fail, "sim_error", f"simulated failure {script.fail}")
        conversation = known or self._open(body["user"])
        if streaming:
            events = self._stream(conversation, messages, script.text, delay, ttft)
            return StreamingResponse(events, media_type="text/event-stream")
        await asyncio.sleep(delay)
        conversation.messages = [*messages, {"role": "assistant", "content": script.text}]
        message_id = str(uuid.uuid4())
        return JSONResponse(
            {
                "event": "message",
                "task_id": str(uuid.uuid4()),
                "id": message_id,
                "message_id": message_id,
                "conversation_id": conversation.id,
                "mode": "chat",
                "answer": script.text,
                "metadata": {"usage": _usage(messages, script.text)},
                "created_at": int(time.time()),
            }
        )

    def _open(self, user: str) -> DifyConversation:
        conversation = DifyConversation(str(uuid.uuid4()), user)
        self.conversations[conversation.id] = conversation
        return conversation

    async def _stream(
        self,
        conversation: DifyConversation,
        messages: list[dict[str, Any]],
        text: str,
        delay: float,
        ttft: float,
    ) -> AsyncIterator[str]:
        ids = {
            "task_id": str(uuid.uuid4()),
            "message_id": str(uuid.uuid4()),
            "conversation_id": conversation.id,
        }
        yield "event: ping\n\n"
        async for piece in paced(text, delay, ttft, self._llm.chunk_chars()):
            if piece:
                created = int(time.time())
                yield _event({"event": "message", **ids, "answer": piece, "created_at": created})
        # Remembered once the answer is complete, as Dify saves a message when it finishes.
        conversation.messages = [*messages, {"role": "assistant", "content": text}]
        usage = _usage(messages, text)
        yield _event(
            {"event": "message_end", **ids, "id": ids["message_id"], "metadata": {"usage": usage}}
        )


def _invalid(body: Any) -> str:
    """Why Dify would refuse this body with ``invalid_param``; empty when it is fine."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if not isinstance(body.get("query"), str):
        return "query is required"
    if not isinstance(body.get("inputs"), dict):
        return "inputs is required"
    if not isinstance(body.get("user"), str) or not body["user"]:
        return "user is required"
    if body.get("response_mode") not in ("streaming", "blocking"):
        return "response_mode must be streaming or blocking"
    if not isinstance(body.get("conversation_id", ""), str):
        return "conversation_id must be a string"
    return ""


async def _hang() -> AsyncIterator[str]:
    # Headers go out, then nothing ever: an app stalled before its first token.
    await asyncio.Event().wait()
    yield ""  # pragma: no cover - never reached


def _usage(messages: list[dict[str, Any]], answer: str) -> dict[str, int]:
    # One "token" per character: plausible numbers without a tokenizer.
    prompt = sum(len(str(m["content"])) for m in messages)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": len(answer),
        "total_tokens": prompt + len(answer),
    }
