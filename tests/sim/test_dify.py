"""The fake Dify endpoint: conversations it issues and remembers, Dify's SSE and error shapes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from chatgate.sim.llm import FakeLLM

KEY = {"Authorization": "Bearer app-sim"}


@dataclass
class Reply:
    status: int
    events: list[dict[str, Any]]
    error: dict[str, Any] | None = None

    @property
    def answer(self) -> str:
        return "".join(e.get("answer", "") for e in self.events if e.get("event") == "message")

    @property
    def conversation_id(self) -> str:
        return str(self.events[-1]["conversation_id"])


@dataclass
class Dify:
    fake: FakeLLM
    http: httpx.AsyncClient
    url: str

    async def ask(self, query: str, conversation_id: str = "", user: str = "u1") -> Reply:
        body = {"inputs": {}, "query": query, "response_mode": "streaming", "user": user}
        if conversation_id:
            body["conversation_id"] = conversation_id
        async with self.http.stream("POST", self.url, json=body, headers=KEY) as response:
            if response.status_code != 200:
                await response.aread()
                return Reply(response.status_code, [], response.json())
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [
                json.loads(line.removeprefix("data: "))
                async for line in response.aiter_lines()
                if line.startswith("data: ")
            ]
        return Reply(200, events)


@pytest.fixture
async def dify() -> AsyncIterator[Dify]:
    fake = FakeLLM(ttft=0.0)
    async with fake.serve() as base_url, httpx.AsyncClient() as http:
        yield Dify(fake, http, base_url + "/chat-messages")


async def test_a_first_question_opens_a_conversation_and_ends_with_message_end(
    dify: Dify,
) -> None:
    reply = await dify.ask("天空为什么是蓝的？")
    assert reply.answer == "你问：天空为什么是蓝的？。这是模拟回答。"
    assert [e["event"] for e in reply.events][-1] == "message_end"
    assert reply.conversation_id in dify.fake.dify.conversations
    assert all(e["conversation_id"] == reply.conversation_id for e in reply.events)


async def test_the_conversation_remembers_earlier_queries(dify: Dify) -> None:
    first = await dify.ask("我叫小明")
    second = await dify.ask("我刚才说了什么？", first.conversation_id)
    assert second.answer == "你刚才说：我叫小明"
    assert second.conversation_id == first.conversation_id
    assert dify.fake.dify.conversations[first.conversation_id].queries == [
        "我叫小明",
        "我刚才说了什么？",
    ]


async def test_without_a_conversation_id_there_is_no_context(dify: Dify) -> None:
    await dify.ask("我叫小明")
    fresh = await dify.ask("我刚才说了什么？")
    assert fresh.answer == "你之前没有说过别的话。"


async def test_an_unknown_or_forgotten_conversation_is_dify_s_404(dify: Dify) -> None:
    first = await dify.ask("q")
    dify.fake.dify.forget(first.conversation_id)
    gone = await dify.ask("again", first.conversation_id)
    assert gone.status == 404
    assert gone.error == {"code": "not_found", "message": "Conversation Not Exists.", "status": 404}


async def test_another_user_cannot_continue_a_conversation(dify: Dify) -> None:
    first = await dify.ask("q", user="alice")
    assert (await dify.ask("刚才", first.conversation_id, user="bob")).status == 404


async def test_fail_directive_answers_dify_s_error_shape_then_succeeds(dify: Dify) -> None:
    failed = await dify.ask("q [fail=429x1]")
    assert failed.status == 429 and failed.error is not None
    assert failed.error["status"] == 429 and failed.error["code"]
    assert (await dify.ask("q [fail=429x1]")).answer == "你问：q。这是模拟回答。"
    assert [c.api for c in dify.fake.calls] == ["dify", "dify"]
    assert [c.question for c in dify.fake.calls] == ["q [fail=429x1]"] * 2


async def test_a_failed_first_question_opens_no_conversation(dify: Dify) -> None:
    await dify.ask("q [fail=500]")
    assert dify.fake.dify.conversations == {}


async def test_len_directive_shapes_the_answer(dify: Dify) -> None:
    assert len((await dify.ask("长 [len=3000]")).answer.encode()) == 3000


async def test_requests_dify_would_refuse_are_400_or_401(dify: Dify) -> None:
    good = {"inputs": {}, "query": "q", "response_mode": "streaming", "user": "u"}
    no_key = await dify.http.post(dify.url, json=good)
    assert no_key.status_code == 401 and no_key.json()["code"] == "unauthorized"
    for broken in ({**good, "user": ""}, {**good, "response_mode": "fast"}, {"query": "q"}):
        response = await dify.http.post(dify.url, json=broken, headers=KEY)
        assert response.status_code == 400 and response.json()["code"] == "invalid_param"
    assert dify.fake.calls == []


async def test_blocking_mode_answers_one_json_object(dify: Dify) -> None:
    body = {"inputs": {}, "query": "q", "response_mode": "blocking", "user": "u"}
    response = await dify.http.post(dify.url, json=body, headers=KEY)
    data = response.json()
    assert data["answer"] == "你问：q。这是模拟回答。" and data["mode"] == "chat"
    assert data["conversation_id"] in dify.fake.dify.conversations


async def test_reset_forgets_conversations_and_calls(dify: Dify) -> None:
    first = await dify.ask("q")
    dify.fake.reset()
    assert dify.fake.calls == []
    assert (await dify.ask("again", first.conversation_id)).status == 404
