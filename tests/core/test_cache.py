"""The answer cache: normalised first-turn questions, answered again without the model."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chatgate.core.cache import AnswerCache, namespace, normalise
from chatgate.core.jobs import CACHE_META
from chatgate.core.messages import Inbound, Kind
from chatgate.core.router import Ask, HandlerResult, Router, kind_is
from chatgate.errors import ProviderError
from chatgate.providers.base import ChatRequest
from chatgate.store.base import AnswerStatus
from chatgate.store.memory import MemoryStore
from tests.core.conftest import Core, Script, ScriptedProvider, build_core


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def msg(text: str, n: int, user: str = "u1", *, image: str = "") -> Inbound:
    if image:
        return Inbound("wechat_mp", "gh_a", user, f"msg:{n}", Kind.IMAGE, media_url=image)
    return Inbound("wechat_mp", "gh_a", user, f"msg:{n}", Kind.TEXT, text=text)


async def ask(core: Core, text: str, n: int, user: str = "u1") -> tuple[str, dict[str, str]]:
    ticket = await core.dispatcher.accept(msg(text, n, user))
    record = await core.store.wait_answer(ticket.answer.id, 5)
    assert record is not None and record.finished
    return record.text, record.meta


@pytest.fixture
async def cached(store: MemoryStore, provider: ScriptedProvider) -> AsyncIterator[Core]:
    core = build_core(store, provider, cache=AnswerCache(store, ttl=60, scope="s"))
    yield core
    await core.supervisor.drain(1.0)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("天空为什么是蓝的？", "  天空为什么是蓝的? "),
        ("What is  GPT?", "what is gpt?"),
        ("ＡＢＣ１２３", "abc123"),
        ("line\none", "line one"),
        ("Straße", "STRASSE"),
    ],
)
def test_normalised_forms_match(a: str, b: str) -> None:
    assert normalise(a) == normalise(b)


def test_different_questions_stay_different() -> None:
    assert normalise("你好") != normalise("你好吗")
    assert normalise("a b") != normalise("ab")


def test_the_scope_separates_providers_models_and_prompts() -> None:
    store = MemoryStore()
    one = AnswerCache(store, ttl=1, scope=namespace("openai", "m1", "prompt"))
    other = AnswerCache(store, ttl=1, scope=namespace("openai", "m2", "prompt"))
    assert one.key("q") != other.key("q")
    assert one.key("Q ") == one.key("q")


async def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    await store.open()
    cache = AnswerCache(store, ttl=60, scope="s")
    await cache.put("q", "a")
    clock.now += 59
    assert await cache.get("Q") == "a"
    clock.now += 2
    assert await cache.get("q") is None


async def test_blank_questions_and_answers_are_not_cached() -> None:
    store = MemoryStore()
    await store.open()
    cache = AnswerCache(store, ttl=60, scope="s")
    await cache.put("  ", "a")
    await cache.put("q", " \n")
    assert await cache.get("  ") is None and await cache.get("q") is None


def test_a_zero_ttl_is_refused() -> None:
    with pytest.raises(ValueError):
        AnswerCache(MemoryStore(), ttl=0, scope="s")


async def test_the_same_first_question_from_another_user_makes_no_provider_call(
    cached: Core, provider: ScriptedProvider
) -> None:
    first, meta = await ask(cached, "天空为什么是蓝的？", 1, user="alice")
    assert CACHE_META not in meta
    again, meta = await ask(cached, " 天空为什么是蓝的? ", 2, user="bob")
    assert again == first == "answer to 天空为什么是蓝的？"
    assert meta[CACHE_META] == "hit"
    assert provider.questions() == ["天空为什么是蓝的？"]


async def test_a_cached_answer_becomes_part_of_the_conversation(
    cached: Core, provider: ScriptedProvider
) -> None:
    await ask(cached, "q", 1, user="alice")
    await ask(cached, "q", 2, user="bob")
    await ask(cached, "follow-up", 3, user="bob")
    context = [(m.role, m.content) for m in provider.calls[-1].messages]
    assert context == [
        ("system", "sys"),
        ("user", "q"),
        ("assistant", "answer to q"),
        ("user", "follow-up"),
    ]


async def test_a_question_with_context_is_neither_cached_nor_served_from_the_cache(
    cached: Core, provider: ScriptedProvider
) -> None:
    await ask(cached, "hello", 1, user="alice")
    await ask(cached, "q", 2, user="alice")  # second turn: alice's context precedes it
    await ask(cached, "q", 3, user="bob")  # first turn for bob, but nothing cached for q
    await ask(cached, "hello", 4, user="bob")  # second turn for bob: not from the cache
    assert provider.questions() == ["hello", "q", "q", "hello"]


async def test_failed_answers_are_not_cached(cached: Core, provider: ScriptedProvider) -> None:
    provider.scripts["bad"] = Script([], fail=ProviderError("boom"))
    assert (await ask(cached, "bad", 1, user="alice"))[0] == "sorry"
    provider.scripts.pop("bad")
    assert (await ask(cached, "bad", 2, user="bob"))[0] == "answer to bad"
    assert provider.questions() == ["bad", "bad"]


async def test_questions_with_images_bypass_the_cache(
    store: MemoryStore, provider: ScriptedProvider
) -> None:
    vision = Router("vision")

    @vision.on(kind_is(Kind.IMAGE))
    async def look(inbound: Inbound) -> HandlerResult:
        return Ask("看图", (inbound.media_url,))

    core = build_core(store, provider, router=vision, cache=AnswerCache(store, ttl=60, scope="s"))
    for n, user in enumerate(("alice", "bob")):
        ticket = await core.dispatcher.accept(msg("", n, user, image="https://img/1.jpg"))
        await core.store.wait_answer(ticket.answer.id, 5)
    assert provider.questions() == ["看图", "看图"]
    assert all(call.messages[-1].images for call in provider.calls)
    await core.supervisor.drain(1.0)


class RememberingProvider(ScriptedProvider):
    """Keeps its own conversation memory in the request state, as Dify does."""

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        request.state["conversation_id"] = request.state.get("conversation_id", "c1")
        async for chunk in super().stream(request):
            yield chunk


async def test_a_provider_with_its_own_memory_is_only_cached_before_it_remembers(
    store: MemoryStore,
) -> None:
    provider = RememberingProvider()
    core = build_core(store, provider, cache=AnswerCache(store, ttl=60, scope="s"))
    await store.kv_set("provider_state:wechat_mp:gh_a:bob", '{"conversation_id": "c9"}')
    await ask(core, "q", 1, user="alice")
    await ask(core, "q", 2, user="bob")  # bob's provider conversation has begun: no cache
    await ask(core, "q", 3, user="carol")
    assert provider.questions() == ["q", "q"]
    record = await core.store.conversation_answers("wechat_mp:gh_a:carol")
    assert record[-1].status is AnswerStatus.DONE and record[-1].meta[CACHE_META] == "hit"
    await core.supervisor.drain(1.0)
