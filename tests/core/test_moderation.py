"""Moderation: blocked questions never reach the model; blocked terms never reach the store."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from chatgate.core.moderation import Blocklist, QuestionModeration, load_blocklist
from chatgate.errors import ConfigError, ProviderError
from chatgate.store.memory import MemoryStore
from tests.core.conftest import Script, ScriptedProvider
from tests.core.feature_support import CONVERSATION, build_feature_core, final, message

BLOCKLIST = Blocklist(["坏词", "BadWord", "ab", "abcd"])


def test_questions_with_a_blocked_term_are_caught_whatever_the_case_or_width() -> None:
    assert BLOCKLIST.blocks("这里有坏词")
    assert BLOCKLIST.blocks("say BADWORD now")
    assert BLOCKLIST.blocks("ｂａｄｗｏｒｄ")
    assert not BLOCKLIST.blocks("a harmless question")
    assert not Blocklist([]).blocks("坏词")


def test_every_occurrence_is_masked_with_the_longest_term_first() -> None:
    assert BLOCKLIST.mask("坏词 and Badword, abcde, ab") == "** and *******, ****e, **"
    assert BLOCKLIST.mask("nothing here") == "nothing here"


def test_masking_a_stream_gives_the_same_text_as_masking_it_whole() -> None:
    rng = random.Random(5)  # fixed seed: the same 500 cases every run
    for _ in range(500):
        text = "".join(rng.choice("坏词abcdBW ord好") for _ in range(rng.randint(0, 40)))
        masker = BLOCKLIST.masker()
        shown, i = [], 0
        while i < len(text):
            size = rng.randint(1, 6)
            shown.append(masker.feed(text[i : i + size]))
            i += size
        shown.append(masker.flush())
        assert "".join(shown) == BLOCKLIST.mask(text), text


def test_a_term_split_across_chunks_is_masked_before_any_of_it_is_shown() -> None:
    masker = Blocklist(["坏词"]).masker()
    first = masker.feed("前面坏")
    assert "坏" not in first
    assert first + masker.feed("词后面") + masker.flush() == "前面**后面"


def test_the_blocklist_file_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "blocklist.txt"
    path.write_text("# one term per line\n\n坏词\n  spaced  \n#not-a-term\n", encoding="utf-8")
    assert set(load_blocklist(path).terms) == {"坏词", "spaced"}
    with pytest.raises(ConfigError, match="cannot read"):
        load_blocklist(tmp_path / "missing.txt")


async def test_a_blocked_question_is_refused_without_a_model_call(
    store: MemoryStore, provider: ScriptedProvider
) -> None:
    core = build_feature_core(
        store, provider, middleware=[QuestionModeration(BLOCKLIST, "refused")]
    )
    record = await final(core, message("tell me about badword"))
    assert record.text == "refused"
    assert provider.calls == []
    allowed = await final(core, message("a fine question", 2))
    assert allowed.text == "answer to a fine question"
    await core.supervisor.drain(1.0)


async def test_blocked_terms_in_an_answer_are_masked_in_partial_and_final_text(
    store: MemoryStore, provider: ScriptedProvider
) -> None:
    gate = asyncio.Event()
    provider.scripts["q"] = Script(["好的，前面坏", "词后面。"], gate=gate)
    core = build_feature_core(store, provider, text_filter=Blocklist(["坏词"]).masker)
    ticket = await core.dispatcher.accept(message("q"))
    for _ in range(200):
        partial = await store.get_answer(ticket.answer.id)
        if partial is not None and partial.text:
            break
        await asyncio.sleep(0.01)
    assert partial is not None and partial.text == "好的，前面"  # 「坏」 held back
    gate.set()
    record = await store.wait_answer(ticket.answer.id, 5)
    assert record is not None and record.text == "好的，前面**后面。"
    await core.supervisor.drain(1.0)
    turns = await store.history(CONVERSATION)
    assert [t.content for t in turns] == ["q", "好的，前面**后面。"]


async def test_a_failed_answer_keeps_its_masked_partial_text(
    store: MemoryStore, provider: ScriptedProvider
) -> None:
    provider.scripts["q"] = Script(["说到坏", "词"], fail=ProviderError("boom"))
    core = build_feature_core(store, provider, text_filter=Blocklist(["坏词"]).masker)
    record = await final(core, message("q"))
    assert record.text.startswith("说到**") and "坏" not in record.text
    await core.supervisor.drain(1.0)
