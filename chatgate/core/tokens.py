"""Estimate LLM tokens offline, and trim a conversation's history to a turn and token budget.

No tokenizer is downloaded or shipped: the count is a deterministic heuristic tuned to sit at or
a little above what OpenAI's cl100k_base gives, which is the least frugal tokenizer a chatgate
deployment is likely to meet for Chinese. It is an estimate for budgeting, not a bill.

Per piece of text:

- CJK ideographs, kana, hangul, bopomofo and full-width forms and punctuation: 1.25 tokens
  each. cl100k gives a common hanzi one token and a rarer one two or three (byte-level BPE over
  three UTF-8 bytes), about 1.0–1.3 tokens per character on running Chinese; o200k and
  Chinese-first tokenizers (Qwen, DeepSeek, GLM) merge frequent two-character words and land
  near 0.6–0.8. 1.25 keeps cl100k-class models inside the budget; for the others it only costs
  some history that would have fitted.
- a run of other letters: one token per 4 UTF-8 bytes, rounded to nearest, at least one (most
  short English words are one token; Cyrillic or Greek, at two bytes a letter, come out at
  about two letters a token, a little above cl100k).
- a run of digits: one token per 3 digits, as cl100k groups them.
- whitespace: a single space is free (it rides on the next word); any other run costs one token
  per 4 characters (newlines, indentation).
- anything else (punctuation, symbols, emoji, joiners): one token per 2 UTF-8 bytes, so ASCII
  punctuation is one token and an emoji two; cl100k merges some runs (``://``, ``**``) into one,
  so code and markdown come out a little high.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from chatgate.core.splitting import utf8_len

_T = TypeVar("_T")

# Per message, OpenAI's chat format adds about 3 tokens of framing plus the role's own token.
MESSAGE_FRAMING_TOKENS = 3
_SINGLE_TOKEN_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

_CJK_TOKENS_NUMERATOR, _CJK_TOKENS_DENOMINATOR = 5, 4  # 1.25 tokens per character

_CJK = (
    "\u1100-\u11ff"  # Hangul jamo
    "\u2e80-\u2fff"  # CJK radicals, Kangxi radicals, ideographic description
    "\u3000-\u9fff"  # CJK punctuation, kana, bopomofo, hangul jamo, CJK ideographs (+ ext A)
    "\ua960-\ua97f"  # Hangul jamo extended-A
    "\uac00-\ud7ff"  # Hangul syllables, jamo extended-B
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\ufe30-\ufe4f"  # CJK compatibility forms
    "\uff00-\uffef"  # half-width and full-width forms
    "\U0001b000-\U0001b16f"  # kana supplement and extensions
    "\U00020000-\U0003ffff"  # CJK ideograph extensions B onwards
)
_PIECES = re.compile(
    rf"(?P<cjk>[{_CJK}]+)"
    r"|(?P<digits>\d+)"
    rf"|(?P<word>[^\W\d_{_CJK}]+)"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)",
    re.DOTALL,
)


def estimate_tokens(text: str) -> int:
    """About how many tokens ``text`` costs a model, erring high (see the module docstring)."""
    cjk = 0
    tokens = 0
    for match in _PIECES.finditer(text):
        piece = match.group()
        kind = match.lastgroup
        if kind == "cjk":
            cjk += len(piece)
        elif kind == "digits":
            tokens += _ceil_div(len(piece), 3)
        elif kind == "word":
            tokens += max(1, (utf8_len(piece) + 2) // 4)
        elif kind == "space":
            if piece != " ":
                tokens += _ceil_div(len(piece), 4)
        else:
            tokens += _ceil_div(utf8_len(piece), 2)
    return tokens + _ceil_div(cjk * _CJK_TOKENS_NUMERATOR, _CJK_TOKENS_DENOMINATOR)


def message_tokens(role: str, content: str) -> int:
    """Tokens one chat message costs: its content plus about 4 for framing and role."""
    role_tokens = 1 if role in _SINGLE_TOKEN_ROLES else max(1, estimate_tokens(role))
    return MESSAGE_FRAMING_TOKENS + role_tokens + estimate_tokens(content)


def trim_context(
    turns: Sequence[_T],
    *,
    max_turns: int,
    max_tokens: int,
    content: Callable[[_T], str],
    role: Callable[[_T], str],
) -> list[_T]:
    """The most recent ``turns`` (oldest first) that fit both budgets.

    ``max_turns`` counts messages (a question and its answer are two); ``max_tokens`` is
    measured with ``message_tokens``. Turns are dropped oldest first and the window is
    contiguous: if the newest turn alone is over ``max_tokens``, nothing is kept. When anything
    was dropped, the window never opens with a turn whose question was dropped: leading turns
    that are not ``"user"`` (an orphaned assistant answer, a tool result) are dropped too.
    Raises ``ValueError`` for a negative budget.
    """
    if max_turns < 0 or max_tokens < 0:
        raise ValueError(f"budgets must not be negative: {max_turns=}, {max_tokens=}")
    first = len(turns)
    used = 0
    while first > 0 and len(turns) - first < max_turns:
        cost = message_tokens(role(turns[first - 1]), content(turns[first - 1]))
        if used + cost > max_tokens:
            break
        used += cost
        first -= 1
    if first > 0:
        while first < len(turns) and role(turns[first]) != "user":
            first += 1
    return list(turns[first:])


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)
