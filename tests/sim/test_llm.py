"""FakeLLM through the real openai SDK over loopback, and its scripting and call log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from chatgate.sim.llm import FakeLLM, Script

# asyncio may wake a sleeper up to its clock resolution early; lower bounds allow for it.
SLACK = 0.05


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.fixture
async def llm() -> AsyncIterator[tuple[FakeLLM, openai.AsyncOpenAI]]:
    fake = FakeLLM()
    async with fake.serve() as base_url:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="sim", max_retries=0)
        yield fake, client
        await client.close()


async def stream_text(client: openai.AsyncOpenAI, messages: list[dict[str, Any]]) -> str:
    stream = await client.chat.completions.create(
        model="sim-llm",
        messages=messages,
        stream=True,
    )
    parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    return "".join(parts)


async def test_streamed_answer_is_the_expected_answer(llm: tuple[FakeLLM, Any]) -> None:
    fake, client = llm
    messages = [user("天空为什么是蓝的？")]
    text = await stream_text(client, messages)
    assert text == fake.expected_answer(messages) == "你问：天空为什么是蓝的？。这是模拟回答。"


async def test_non_streamed_answer_is_a_chat_completion(llm: tuple[FakeLLM, Any]) -> None:
    fake, client = llm
    messages = [user("hello")]
    completion = await client.chat.completions.create(model="m", messages=messages)
    assert completion.choices[0].message.content == fake.expected_answer(messages)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "m"


async def test_models_lists_the_fake_model(llm: tuple[FakeLLM, Any]) -> None:
    _, client = llm
    models = await client.models.list()
    assert [m.id for m in models.data] == ["sim-llm"]


async def test_stream_reports_usage_when_asked(llm: tuple[FakeLLM, Any]) -> None:
    _, client = llm
    stream = await client.chat.completions.create(
        model="m", messages=[user("abc")], stream=True, stream_options={"include_usage": True}
    )
    usages = [chunk.usage async for chunk in stream if chunk.usage is not None]
    assert len(usages) == 1
    assert usages[0].prompt_tokens == 3


async def test_len_directive_gives_exact_bytes_in_paragraphs(llm: tuple[FakeLLM, Any]) -> None:
    fake, client = llm
    messages = [user("写长文 [len=6000]")]
    text = await stream_text(client, messages)
    assert len(text.encode()) == 6000
    assert text == fake.expected_answer(messages)
    assert text.count("\n\n") >= 5
    assert text.count("。") >= 30


async def test_previous_question_is_quoted_from_the_context(llm: tuple[FakeLLM, Any]) -> None:
    _, client = llm
    messages = [
        user("我叫小明"),
        {"role": "assistant", "content": "你好"},
        user("我刚才说了什么？"),
    ]
    assert await stream_text(client, messages) == "你刚才说：我叫小明"


async def test_delay_spreads_the_stream_after_the_first_chunk() -> None:
    fake = FakeLLM(ttft=0.2)
    async with fake.serve() as base_url, httpx.AsyncClient() as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        arrivals = []
        body = {"model": "m", "stream": True, "messages": [user("q [delay=0.6] [len=200]")]}
        async with client.stream("POST", base_url + "/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {") and '"content"' in line:
                    arrivals.append(loop.time() - started)
            finished = loop.time() - started
    assert len(arrivals) > 2
    assert arrivals[0] >= 0.2 - SLACK
    assert arrivals[-1] > arrivals[0]
    assert finished >= 0.6 - SLACK


async def test_delay_holds_a_non_streamed_answer() -> None:
    fake = FakeLLM()
    async with fake.serve() as base_url:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="sim", max_retries=0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.chat.completions.create(model="m", messages=[user("q [delay=0.3]")])
        assert loop.time() - started >= 0.3 - SLACK
        await client.close()


async def test_fail_directive_returns_that_status(llm: tuple[FakeLLM, Any]) -> None:
    _, client = llm
    with pytest.raises(openai.InternalServerError) as caught:
        await stream_text(client, [user("q [fail=500]")])
    assert caught.value.status_code == 500
    with pytest.raises(openai.InternalServerError):
        await stream_text(client, [user("q [fail=500]")])


async def test_fail_times_fails_first_calls_then_answers(llm: tuple[FakeLLM, Any]) -> None:
    fake, client = llm
    messages = [user("q [fail=429x1]")]
    with pytest.raises(openai.RateLimitError):
        await stream_text(client, messages)
    assert (
        await stream_text(client, messages)
        == fake.expected_answer(messages)
        == "你问：q。这是模拟回答。"
    )
    # Another message with the same directive has its own budget.
    with pytest.raises(openai.RateLimitError):
        await stream_text(client, [user("other [fail=429x1]")])
    assert len(fake.calls) == 3


async def test_hang_never_answers(llm: tuple[FakeLLM, Any]) -> None:
    _, client = llm
    impatient = client.with_options(timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        await impatient.chat.completions.create(model="m", messages=[user("q [hang]")])
    with pytest.raises((openai.APITimeoutError, httpx.ReadTimeout)):
        await stream_text(impatient, [user("q [hang]")])


async def test_calls_are_logged_and_served_as_json_until_reset() -> None:
    fake = FakeLLM()
    async with fake.serve() as base_url, httpx.AsyncClient() as http:
        sim_url = base_url.removesuffix("/v1") + "/_sim"
        client = openai.AsyncOpenAI(base_url=base_url, api_key="sim", max_retries=0)
        await stream_text(client, [user("first")])
        await client.chat.completions.create(model="m", messages=[user("second")])
        assert [c.body["messages"][-1]["content"] for c in fake.calls] == ["first", "second"]
        assert fake.calls[0].body["stream"] is True
        logged = (await http.get(sim_url + "/calls")).json()
        assert [c["body"]["messages"][-1]["content"] for c in logged] == ["first", "second"]
        assert logged[0]["at"] <= logged[1]["at"]
        assert (await http.post(sim_url + "/reset")).status_code == 200
        assert fake.calls == []
        assert (await http.get(sim_url + "/calls")).json() == []
        await client.close()


async def test_reset_restores_a_fail_budget(llm: tuple[FakeLLM, Any]) -> None:
    fake, client = llm
    messages = [user("q [fail=503x1]")]
    with pytest.raises(openai.InternalServerError):
        await stream_text(client, messages)
    fake.reset()
    with pytest.raises(openai.InternalServerError):
        await stream_text(client, messages)


async def test_a_script_hook_replaces_the_directives() -> None:
    def script(messages: list[dict[str, Any]]) -> Script:
        return Script(text=f"{len(messages)} messages")

    fake = FakeLLM(script=script)
    async with fake.serve() as base_url:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="sim", max_retries=0)
        messages = [user("a [len=99]"), user("b")]
        assert await stream_text(client, messages) == "2 messages"
        assert fake.expected_answer(messages) == "2 messages"
        await client.close()


async def test_a_body_that_is_not_json_is_a_400() -> None:
    fake = FakeLLM()
    async with fake.serve() as base_url, httpx.AsyncClient() as http:
        response = await http.post(base_url + "/chat/completions", content=b"{nope")
    assert response.status_code == 400
    assert "error" in response.json()
    assert fake.calls == []
