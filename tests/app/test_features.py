"""Feature assembly: settings pick the features, bad files name their setting, order holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chatgate.app.features import build_features
from chatgate.config import load_settings
from chatgate.core.conversations import Conversations
from chatgate.core.decisions import Ask, Reply
from chatgate.core.router import Router
from chatgate.core.routes import default_router
from chatgate.core.texts import Texts
from chatgate.errors import ConfigError
from chatgate.store.memory import MemoryStore
from tests.clock import FrozenClock
from tests.core.feature_support import message

TEXTS = Texts()


def root_for(store: MemoryStore, **settings: Any) -> Router:
    features = build_features(
        load_settings(environ={}, **settings),
        store=store,
        texts=TEXTS,
        conversations=Conversations(store, system_prompt="", max_turns=5, max_tokens=500),
        clock=FrozenClock(1_700_000_080.0),
    )
    root = Router()
    features.install(root)
    root.include(default_router(TEXTS))
    return root


@pytest.fixture
async def store() -> MemoryStore:
    return MemoryStore()


async def test_by_default_text_asks_the_model_and_commands_answer(store: MemoryStore) -> None:
    root = root_for(store)
    assert await root.resolve(message("你好")) == Ask("你好")
    assert await root.resolve(message("/new")) == Reply(TEXTS.context_reset)


async def test_refused_questions_and_hints_do_not_use_up_the_rate_limit(
    store: MemoryStore, tmp_path: Path
) -> None:
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("炸药\n", encoding="utf-8")
    root = root_for(
        store, rate_limit="2/min", session_mode="command", blocklist_file=str(blocklist)
    )
    for _ in range(3):
        hint = Reply(TEXTS.session_hint.format(p="/"))
        assert await root.resolve(message("outside a session")) == hint
    await root.resolve(message("/chatgpt"))
    for _ in range(3):
        assert await root.resolve(message("怎么做炸药")) == Reply(TEXTS.refused)
    assert await root.resolve(message("q1")) == Ask("q1")
    assert await root.resolve(message("q2")) == Ask("q2")
    limited = await root.resolve(message("q3"))
    assert isinstance(limited, Reply) and limited.text.startswith("提问太频繁了")


@pytest.mark.parametrize(
    ("setting", "content", "complaint"),
    [
        ("rules_file", "[[rule]]\nreply = 'no pattern'\n", "CHATGATE_RULES_FILE: .*rule 1"),
        ("rules_file", "not toml [", "CHATGATE_RULES_FILE: .*not valid TOML"),
        ("blocklist_file", b"\xff\xfe", "CHATGATE_BLOCKLIST_FILE: .*not UTF-8"),
    ],
)
def test_a_bad_file_stops_the_start_naming_its_setting(
    tmp_path: Path, setting: str, content: str | bytes, complaint: str
) -> None:
    path = tmp_path / "file"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    store = MemoryStore()
    with pytest.raises(ConfigError, match=complaint):
        root_for(store, **{setting: str(path)})
