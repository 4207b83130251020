"""Rate limits: per-user questions counted in the store's fixed windows; only model calls count."""

from __future__ import annotations

import pytest

from chatgate.core.commands import Commands
from chatgate.core.conversations import Conversations
from chatgate.core.decisions import Ask, Reply
from chatgate.core.ratelimit import Limit, RateLimit, RateLimiter, wait_text
from chatgate.core.texts import Texts
from chatgate.store.memory import MemoryStore
from tests.clock import FrozenClock
from tests.core.feature_support import CONVERSATION, feature_router, message

TEXTS = Texts()
START = 1_700_000_080.0  # 40 s into a minute, so windows are easy to reason about


async def test_the_count_per_window_is_enforced_and_resets_with_the_next_window(
    store: MemoryStore,
) -> None:
    clock = FrozenClock(START)
    limiter = RateLimiter(store, [Limit(3, 60)], clock=clock)
    assert [await limiter.hit(CONVERSATION) for _ in range(3)] == [None, None, None]
    assert await limiter.hit(CONVERSATION) == pytest.approx(20.0)  # the minute ends in 20 s
    clock.advance(20)
    assert await limiter.hit(CONVERSATION) is None


async def test_questions_refused_by_the_short_limit_do_not_use_up_the_long_one(
    store: MemoryStore,
) -> None:
    clock = FrozenClock(START)
    limiter = RateLimiter(store, [Limit(5, 86400), Limit(2, 60)], clock=clock)
    for _ in range(10):  # 2 allowed, 8 refused by the minute limit
        await limiter.hit(CONVERSATION)
    clock.advance(60)
    assert [await limiter.hit(CONVERSATION) for _ in range(2)] == [None, None]  # 4 of 5 today
    clock.advance(60)
    assert await limiter.hit(CONVERSATION) is None  # the 5th
    assert await limiter.hit(CONVERSATION) is not None


async def test_counts_are_shared_by_every_instance_on_one_store(store: MemoryStore) -> None:
    clock = FrozenClock(START)
    one, two = (RateLimiter(store, [Limit(2, 60)], clock=clock) for _ in range(2))
    assert await one.hit(CONVERSATION) is None
    assert await two.hit(CONVERSATION) is None
    assert await one.hit(CONVERSATION) is not None
    assert await two.hit("wechat_mp:gh_a:another-user") is None


async def test_forget_clears_the_current_counts(store: MemoryStore) -> None:
    limiter = RateLimiter(store, [Limit(1, 60)], clock=FrozenClock(START))
    await limiter.hit(CONVERSATION)
    await limiter.forget(CONVERSATION)
    assert await limiter.hit(CONVERSATION) is None


async def test_only_messages_that_would_call_the_model_count(store: MemoryStore) -> None:
    limiter = RateLimiter(store, [Limit(2, 60)], clock=FrozenClock(START))
    conversations = Conversations(store, system_prompt="", max_turns=20, max_tokens=3000)
    commands = Commands(conversations=conversations, texts=TEXTS)
    router = feature_router(routers=[commands.router()], middleware=[RateLimit(limiter, TEXTS)])
    for typed in ["/help", "1", "/new", "/nope", "帮助"]:
        assert not isinstance(await router.resolve(message(typed)), Ask)
    assert await router.resolve(message("q1")) == Ask("q1")
    assert await router.resolve(message("q2")) == Ask("q2")
    limited = await router.resolve(message("q3"))
    assert limited == Reply(TEXTS.rate_limited.format(wait="20 秒"))


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.2, "1 秒"),
        (20, "20 秒"),
        (60, "60 秒"),
        (61, "2 分钟"),
        (3600, "60 分钟"),
        (7201, "3 小时"),
    ],
)
def test_the_wait_is_rounded_up_to_a_readable_unit(seconds: float, shown: str) -> None:
    assert wait_text(TEXTS, seconds) == shown
