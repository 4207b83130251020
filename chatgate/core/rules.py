"""Keyword replies: a TOML rules file (exact / contains / regex → text) checked before the model.

```toml
[[rule]]
exact = ["你好", "hello"]          # the whole message
reply = "你好！有什么可以帮你？"

[[rule]]
contains = "营业时间"               # anywhere in the message
reply = "每天 9:00–18:00 营业。"

[[rule]]
regex = '^订单\\s*\\d{6,}$'        # Python re.search on the message
reply = "订单请在「我的订单」里查看。"

[menu]                             # menu CLICK keys → what the click stands for
HELP = "/help"
HOURS = "营业时间"
```

``exact`` and ``contains`` take a string or a list and ignore case, full/half width and
surrounding spaces; ``exact`` also ignores closing punctuation (「你好！」 is 「你好」). A rule
matches when any of its patterns does; the first matching rule answers. Menu values are typed
for the user (see ``core.events``): a command, a keyword, or a question.
"""

from __future__ import annotations

import logging
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatgate.core.decisions import UNHANDLED, HandlerResult, Reply
from chatgate.core.messages import Inbound, Kind
from chatgate.core.router import Router, kind_is
from chatgate.errors import ConfigError

log = logging.getLogger(__name__)

_TRAILING = "。．.!！?？~～"
_RULE_KEYS = frozenset({"exact", "contains", "regex", "reply"})


def fold(text: str) -> str:
    """Text as rules compare it: NFKC (full width → half), case-folded, trimmed."""
    return unicodedata.normalize("NFKC", text).casefold().strip()


@dataclass(frozen=True, slots=True)
class Rule:
    reply: str
    exact: frozenset[str] = frozenset()  # folded, closing punctuation removed
    contains: tuple[str, ...] = ()  # folded
    regex: tuple[re.Pattern[str], ...] = ()

    def matches(self, text: str) -> bool:
        folded = fold(text)
        if folded.rstrip(_TRAILING).strip() in self.exact:
            return True
        if any(term in folded for term in self.contains):
            return True
        stripped = text.strip()
        return any(pattern.search(stripped) for pattern in self.regex)


@dataclass(frozen=True, slots=True)
class RuleBook:
    """The rules, in file order, and the menu's CLICK keys."""

    rules: tuple[Rule, ...] = ()
    menu: Mapping[str, str] = field(default_factory=dict)

    def reply_for(self, text: str) -> str | None:
        for rule in self.rules:
            if rule.matches(text):
                return rule.reply
        return None

    def router(self) -> Router:
        router = Router("rules")

        @router.on(kind_is(Kind.TEXT))
        async def keyword(inbound: Inbound) -> HandlerResult:
            reply = self.reply_for(inbound.text)
            if reply is None:
                return UNHANDLED
            log.info("message %s answered by a keyword rule", inbound.dedup_key)
            return Reply(reply)

        return router


def load_rules(path: str | Path) -> RuleBook:
    """Read a rules file; ``ConfigError`` saying where for anything malformed."""
    source = Path(path)
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read rules file {source}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"rules file {source} is not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"rules file {source} is not valid TOML: {exc}") from None
    return parse_rules(data, str(source))


def parse_rules(data: Mapping[str, Any], source: str = "rules") -> RuleBook:
    unknown = sorted(set(data) - {"rule", "menu"})
    if unknown:
        raise ConfigError(f"{source}: unknown key {', '.join(unknown)} (expected [[rule]], [menu])")
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        raise ConfigError(f"{source}: 'rule' must be an array of tables: [[rule]]")
    rules = tuple(_rule(raw, f"{source}: rule {n}") for n, raw in enumerate(raw_rules, 1))
    raw_menu = data.get("menu", {})
    if not isinstance(raw_menu, dict):
        raise ConfigError(f"{source}: 'menu' must be a table: [menu]")
    menu: dict[str, str] = {}
    for key, value in raw_menu.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{source}: menu key {key!r} must map to non-empty text")
        menu[key] = value.strip()
    return RuleBook(rules, menu)


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {', '.join(unknown)}")
    reply = raw.get("reply")
    if not isinstance(reply, str) or not reply.strip():
        raise ConfigError(f"{where}: 'reply' must be non-empty text")
    exact = _strings(raw, "exact", where)
    contains = _strings(raw, "contains", where)
    patterns = _strings(raw, "regex", where)
    if not (exact or contains or patterns):
        raise ConfigError(f"{where}: needs 'exact', 'contains' or 'regex'")
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ConfigError(f"{where}: bad regex {pattern!r}: {exc}") from None
    return Rule(
        reply=reply.strip(),
        exact=frozenset(fold(t).rstrip(_TRAILING).strip() for t in exact),
        contains=tuple(fold(t) for t in contains),
        regex=tuple(compiled),
    )


def _strings(raw: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = raw.get(key)
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise ConfigError(f"{where}: '{key}' must be non-empty text or a list of it")
    return list(values)
