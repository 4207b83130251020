"""Links to the pages: built from the public URL, history tokens bound, reused, expiring."""

from __future__ import annotations

import pytest

from chatgate.core.delivery import Delivery, Surface
from chatgate.core.links import Links, new_token, token_shaped
from chatgate.core.texts import Texts
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus
from chatgate.store.memory import MemoryStore
from tests.store.support import FakeClock

TTL = 1000.0
PUBLIC = "https://gate.example/bot"


def record(kind: AnswerKind = AnswerKind.LLM, text: str = "") -> AnswerRecord:
    return AnswerRecord(
        id="a1",
        conversation="c1",
        dedup_key="m1",
        kind=kind,
        question="q",
        page_token=new_token(),
        status=AnswerStatus.DONE if text else AnswerStatus.RUNNING,
        text=text,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def links(clock: FakeClock) -> Links:
    return Links(MemoryStore(clock=clock), PUBLIC + "/", ttl=TTL, clock=clock)


def test_tokens_are_128_random_bits_url_safe() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(token_shaped(t) and len(t) == 22 for t in tokens)
    assert not token_shaped("short") and not token_shaped("a" * 21 + "/")


def test_answer_link_is_the_page_token_under_the_public_url(links: Links) -> None:
    answer = record()
    assert links.answer_link(answer) == f"{PUBLIC}/a/{answer.page_token}"
    assert links.answer_link(record(AnswerKind.REPLY)) is not None


def test_a_fetch_has_no_answer_link(links: Links) -> None:
    assert links.answer_link(record(AnswerKind.FETCH)) is None


async def test_without_a_public_url_nothing_gets_a_link(clock: FakeClock) -> None:
    links = Links(MemoryStore(clock=clock), None, ttl=TTL, clock=clock)
    assert not links.enabled
    assert links.answer_link(record()) is None
    assert await links.history_link("c1") is None


async def test_history_link_resolves_to_its_conversation_only(links: Links) -> None:
    mine = await links.history_link("c1")
    theirs = await links.history_link("c2")
    assert mine is not None and theirs is not None and mine != theirs
    assert mine.startswith(f"{PUBLIC}/h/")
    assert await links.resolve_history(mine.rsplit("/", 1)[1]) == "c1"
    assert await links.resolve_history(theirs.rsplit("/", 1)[1]) == "c2"
    assert await links.resolve_history(new_token()) is None
    assert await links.resolve_history("../../etc") is None


async def test_asking_again_reuses_the_link_while_it_has_half_its_life(
    links: Links, clock: FakeClock
) -> None:
    first = await links.history_token("c1")
    clock.advance(TTL / 2 - 1)
    assert await links.history_token("c1") == first
    clock.advance(2)
    second = await links.history_token("c1")
    assert second != first
    # The older link still works until its own expiry, then only the newer one does.
    assert await links.resolve_history(first) == "c1"
    clock.advance(TTL / 2)
    assert await links.resolve_history(first) is None
    assert await links.resolve_history(second) == "c1"
    clock.advance(TTL / 2)
    assert await links.resolve_history(second) is None
    assert await links.history_token("c1") not in (first, second)


async def test_revoking_kills_every_live_history_link(links: Links, clock: FakeClock) -> None:
    first = await links.history_token("c1")
    clock.advance(TTL * 0.6)
    second = await links.history_token("c1")
    other = await links.history_token("c2")
    await links.revoke_history("c1")
    assert await links.resolve_history(first) is None
    assert await links.resolve_history(second) is None
    assert await links.resolve_history(other) == "c2"
    assert await links.history_token("c1") not in (first, second)


def delivery(links: Links, max_bytes: int = 2048) -> Delivery:
    surface = Surface(max_bytes=max_bytes, link_for=links.answer_link)
    return Delivery(MemoryStore(), surface, Texts(), answer_ttl=TTL)


def test_the_last_try_placeholder_carries_the_answer_link(links: Links) -> None:
    answer = record()
    text = delivery(links).placeholder(answer)
    assert text == Texts().thinking_with_link.format(link=links.answer_link(answer))


def test_the_first_part_of_a_long_answer_carries_the_answer_link(links: Links) -> None:
    answer = record(text="很长的回答。" * 400)
    part = delivery(links, max_bytes=600).part(answer, 0)
    link = links.answer_link(answer)
    assert part.more and part.text.endswith(Texts().more_with_link.format(link=link))
    assert len(part.text.encode()) <= 600


def test_without_a_public_url_replies_carry_no_link(clock: FakeClock) -> None:
    links = Links(MemoryStore(), None, ttl=TTL)
    answer = record(text="很长的回答。" * 400)
    assert delivery(links).placeholder(record()) == Texts().thinking
    assert delivery(links, max_bytes=600).part(answer, 0).text.endswith(Texts().more)
