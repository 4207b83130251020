"""FakeProvider: deterministic offline answers scripted by inline directives."""

from __future__ import annotations

import pytest

from chatgate.errors import ProviderError
from chatgate.providers.base import ChatMessage, ChatRequest, ImagePart, Provider
from chatgate.providers.fake import MAX_DELAY, MAX_LEN, FakeProvider, parse_directives


def request(*user_texts: str, images: tuple[ImagePart, ...] = ()) -> ChatRequest:
    messages = [ChatMessage("system", "be nice")]
    for i, text in enumerate(user_texts):
        if i:
            messages.append(ChatMessage("assistant", f"answer {i}"))
        last = i == len(user_texts) - 1
        messages.append(ChatMessage("user", text, images if last else ()))
    return ChatRequest(messages=messages, user="u1", conversation="c1")


async def collect(provider: FakeProvider, req: ChatRequest) -> list[str]:
    return [chunk async for chunk in provider.stream(req)]


def fast() -> FakeProvider:
    return FakeProvider(delay=0.0, chunk_delay=0.0)


async def test_answer_echoes_the_last_user_message_in_several_chunks() -> None:
    chunks = await collect(fast(), request("first", "今天天气怎么样"))
    assert len(chunks) > 2
    assert "".join(chunks).startswith("（演示回答）你说的是：今天天气怎么样。")


async def test_echo_keeps_the_users_own_sentence_end() -> None:
    text = "".join(await collect(fast(), request("你是谁？")))
    assert text.startswith("（演示回答）你说的是：你是谁？这")


async def test_same_request_gives_the_same_chunks() -> None:
    req = request("你好", "讲个笑话")
    assert await collect(fast(), req) == await collect(fast(), req)


async def test_stream_follows_the_plan() -> None:
    provider = FakeProvider(delay=0.01, chunk_delay=0.001)
    req = request("hello")
    assert tuple(await collect(provider, req)) == provider.plan(req).chunks


async def test_gangcai_quotes_the_previous_user_message() -> None:
    text = "".join(await collect(fast(), request("我叫小明", "我刚才说了什么？")))
    assert "我叫小明" in text
    assert "answer" not in text  # the previous *user* message, not the assistant's


async def test_gangcai_without_history_says_so() -> None:
    text = "".join(await collect(fast(), request("我刚才说了什么？")))
    assert "还没说过" in text


async def test_images_are_acknowledged() -> None:
    req = request("看图", images=(ImagePart("https://img.example/a.png"),))
    assert "1 张图片" in "".join(await collect(fast(), req))


@pytest.mark.parametrize("size", [0, 1, 2, 50, 2048, 2049, 5000])
async def test_len_directive_gives_exactly_that_many_bytes(size: int) -> None:
    text = "".join(await collect(fast(), request(f"长一点 [len={size}]")))
    assert len(text.encode("utf-8")) == size


async def test_directives_are_not_echoed() -> None:
    text = "".join(await collect(fast(), request("hello [delay=0] [len=200]")))
    assert "[" not in text
    assert "你说的是：hello。" in text


def test_delay_directive_sets_the_total_time() -> None:
    provider = FakeProvider(delay=5.0, chunk_delay=1.0)
    plan = provider.plan(request("slow please [delay=7.5]"))
    assert len(plan.chunks) > 1
    assert plan.total_delay == pytest.approx(7.5)


def test_without_directives_the_constructor_delays_apply() -> None:
    plan = FakeProvider(delay=0.5, chunk_delay=0.1).plan(request("hi"))
    assert plan.first_delay == 0.5
    assert plan.chunk_delay == 0.1


async def test_fail_directive_raises_provider_error_without_text() -> None:
    got: list[str] = []
    with pytest.raises(ProviderError):
        async for chunk in fast().stream(request("please [fail]")):
            got.append(chunk)
    assert got == []


def test_directives_only_count_in_the_last_user_message() -> None:
    plan = fast().plan(request("[fail] [len=3]", "now answer"))
    assert not plan.fail
    assert len(plan.text.encode()) != 3


def test_directive_values_are_capped() -> None:
    _, directives = parse_directives("[delay=99999] [len=999999999]")
    assert directives.delay == MAX_DELAY
    assert directives.length == MAX_LEN


def test_directives_are_case_and_space_tolerant() -> None:
    text, directives = parse_directives("hi [ DELAY = 1.5 ] [Len=10] [FAIL]")
    assert text == "hi"
    assert directives.delay == 1.5
    assert directives.length == 10
    assert directives.fail


def test_fake_provider_satisfies_the_protocol() -> None:
    assert isinstance(FakeProvider(), Provider)
    assert FakeProvider().name == "fake"


def test_negative_delays_are_rejected() -> None:
    with pytest.raises(ValueError):
        FakeProvider(delay=-1)
