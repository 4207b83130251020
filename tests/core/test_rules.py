"""Keyword rules: exact, contains and regex from a TOML file, checked before the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chatgate.core.decisions import UNHANDLED, Reply
from chatgate.core.rules import load_rules, parse_rules
from chatgate.errors import ConfigError
from tests.core.feature_support import message

RULES = """
[[rule]]
exact = ["你好", "Hello"]
reply = "你好！有什么可以帮你？"

[[rule]]
contains = ["营业时间", "几点开门"]
reply = "每天 9:00–18:00 营业。"

[[rule]]
regex = '^订单\\s*\\d{6,}$'
reply = "订单请在「我的订单」里查看。"

[[rule]]
contains = "你好"
reply = "never: the exact rule above comes first"

[menu]
HELP = "/help"
HOURS = "营业时间"
"""


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("typed", "reply"),
    [
        ("你好", "你好！有什么可以帮你？"),
        ("  HELLO！ ", "你好！有什么可以帮你？"),  # case, spaces and closing punctuation
        ("ｈｅｌｌｏ", "你好！有什么可以帮你？"),  # full-width letters
        ("请问营业时间是？", "每天 9:00–18:00 营业。"),
        ("你们几点开门", "每天 9:00–18:00 营业。"),
        ("订单 1234567", "订单请在「我的订单」里查看。"),
        ("你好呀", "never: the exact rule above comes first"),
    ],
)
def test_the_first_matching_rule_answers(rules_file: Path, typed: str, reply: str) -> None:
    assert load_rules(rules_file).reply_for(typed) == reply


def test_text_no_rule_matches_has_no_reply(rules_file: Path) -> None:
    book = load_rules(rules_file)
    assert book.reply_for("订单 12") is None
    assert book.reply_for("what's up") is None


def test_the_menu_table_maps_click_keys_to_text(rules_file: Path) -> None:
    assert dict(load_rules(rules_file).menu) == {"HELP": "/help", "HOURS": "营业时间"}


async def test_the_router_replies_or_lets_the_message_through(rules_file: Path) -> None:
    router = load_rules(rules_file).router()
    assert await router.resolve(message("你好")) == Reply("你好！有什么可以帮你？")
    assert await router.resolve(message("tell me a joke")) is UNHANDLED


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        ({"rules": []}, "unknown key rules"),
        ({"rule": {"exact": "a", "reply": "b"}}, "array of tables"),
        ({"rule": [{"exact": "a"}]}, "rule 1: 'reply'"),
        ({"rule": [{"reply": "b"}]}, "needs 'exact', 'contains' or 'regex'"),
        ({"rule": [{"exact": "a", "reply": "b", "startswith": "c"}]}, "unknown key startswith"),
        ({"rule": [{"exact": "a", "reply": "b"}, {"regex": "(", "reply": "b"}]}, "rule 2: bad"),
        ({"rule": [{"contains": [1], "reply": "b"}]}, "'contains' must be"),
        ({"menu": {"HELP": ""}}, "menu key 'HELP'"),
    ],
)
def test_malformed_rules_say_what_and_where(data: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        parse_rules(data, "rules.toml")


def test_an_unreadable_or_invalid_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_rules(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rule]\nexact = ", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_rules(bad)
