"""Offline token estimates and trimming the history to a turn and token budget."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatgate.core.splitting import utf8_len
from chatgate.core.tokens import estimate_tokens, message_tokens, trim_context

# --- estimate_tokens ---------------------------------------------------------------------------


def test_empty_text_costs_nothing() -> None:
    assert estimate_tokens("") == 0


def test_chinese_costs_a_little_more_than_a_token_per_character() -> None:
    assert estimate_tokens("你") == 2  # 1.25 rounded up
    assert estimate_tokens("你好世界") == 5
    assert estimate_tokens("中" * 100) == 125


def test_kana_hangul_and_fullwidth_punctuation_count_like_hanzi() -> None:
    assert (
        estimate_tokens("こんにちは")
        == estimate_tokens("안녕하세요")
        == estimate_tokens("你好你好你")
    )
    assert estimate_tokens("你好，世界。") == estimate_tokens("你好你世界你")


def test_english_is_close_to_cl100k() -> None:
    # cl100k_base encodes this sentence in 10 tokens.
    assert 10 <= estimate_tokens("The quick brown fox jumps over the lazy dog.") <= 13


def test_long_words_cost_more_than_short_ones() -> None:
    assert estimate_tokens("a") == 1
    assert estimate_tokens("internationalization") == 5


def test_digits_are_counted_in_groups_of_three() -> None:
    assert estimate_tokens("123") == 1
    assert estimate_tokens("1234567") == 3


def test_single_spaces_are_free_but_newlines_and_indentation_are_not() -> None:
    assert estimate_tokens("a b") == estimate_tokens("ab") + 1
    assert estimate_tokens("a\nb") == 3
    assert estimate_tokens("a\n\n        b") == 5


def test_emoji_cost_more_than_ascii_punctuation() -> None:
    assert estimate_tokens("!") == 1
    assert estimate_tokens("😀") == 2


def test_mixed_text_adds_up() -> None:
    assert estimate_tokens("用Python写3个函数") == estimate_tokens("用写个函数") + 1 + 1 + 1


def test_estimate_is_fast_on_long_text() -> None:
    text = "你好，世界。Hello, world! 12345\n" * 20000
    assert estimate_tokens(text) > len(text) // 4


@given(st.text(max_size=500))
def test_estimate_is_at_least_one_per_hanzi_and_at_most_one_per_byte(text: str) -> None:
    hanzi = sum(1 for char in text if "\u4e00" <= char <= "\u9fff")
    tokens = estimate_tokens(text)
    assert hanzi <= tokens <= utf8_len(text)
    assert estimate_tokens(text) == tokens


# --- message_tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["user", "assistant", "system"])
def test_message_costs_four_tokens_of_overhead(role: str) -> None:
    assert message_tokens(role, "") == 4
    assert message_tokens(role, "你好世界") == 4 + 5


def test_unknown_role_is_estimated_too() -> None:
    assert message_tokens("a_really_long_custom_role_name", "") > 4


# --- trim_context -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    role: str
    text: str


def trim(turns: list[Turn], max_turns: int = 100, max_tokens: int = 10_000) -> list[Turn]:
    return trim_context(
        turns,
        max_turns=max_turns,
        max_tokens=max_tokens,
        content=lambda turn: turn.text,
        role=lambda turn: turn.role,
    )


def cost(*turns: Turn) -> int:
    return sum(message_tokens(turn.role, turn.text) for turn in turns)


U1, A1 = Turn("user", "第一个问题"), Turn("assistant", "第一个回答，比较长一些。")
U2, A2 = Turn("user", "第二个问题"), Turn("assistant", "第二个回答。")
U3, A3 = Turn("user", "第三个问题是什么"), Turn("assistant", "第三个回答")
HISTORY = [U1, A1, U2, A2, U3, A3]


def test_everything_is_kept_when_it_fits() -> None:
    assert trim(HISTORY) == HISTORY


def test_empty_history_stays_empty() -> None:
    assert trim([]) == []


@pytest.mark.parametrize(("max_turns", "max_tokens"), [(0, 10_000), (100, 0), (0, 0)])
def test_zero_budgets_keep_nothing(max_turns: int, max_tokens: int) -> None:
    assert trim(HISTORY, max_turns=max_turns, max_tokens=max_tokens) == []


def test_negative_budgets_are_refused() -> None:
    with pytest.raises(ValueError):
        trim(HISTORY, max_turns=-1)
    with pytest.raises(ValueError):
        trim(HISTORY, max_tokens=-1)


def test_max_turns_counts_messages_and_drops_the_oldest() -> None:
    assert trim(HISTORY, max_turns=4) == [U2, A2, U3, A3]
    assert trim(HISTORY, max_turns=2) == [U3, A3]


def test_orphaned_assistant_turn_is_dropped_with_its_question() -> None:
    assert trim(HISTORY, max_turns=5) == [U2, A2, U3, A3]
    assert trim(HISTORY, max_turns=1) == []


def test_exact_token_fit_is_kept_and_one_token_less_is_not() -> None:
    budget = cost(U3, A3)
    assert trim(HISTORY, max_tokens=budget) == [U3, A3]
    assert trim(HISTORY, max_tokens=budget - 1) == []  # only A3 fits, and it is an orphan
    budget = cost(U2, A2, U3, A3)
    assert trim(HISTORY, max_tokens=budget) == [U2, A2, U3, A3]
    assert trim(HISTORY, max_tokens=budget + cost(A1) - 1) == [U2, A2, U3, A3]


def test_newest_turn_alone_over_budget_keeps_nothing() -> None:
    history = [Turn("user", "短"), Turn("assistant", "长" * 1000)]
    assert trim(history, max_tokens=500) == []


def test_window_is_contiguous_even_when_an_older_turn_would_fit() -> None:
    history = [Turn("user", "短"), Turn("assistant", "长" * 1000), Turn("user", "短问题")]
    assert trim(history, max_tokens=50) == [history[2]]


def test_history_opening_with_an_assistant_greeting_keeps_it_when_nothing_is_dropped() -> None:
    history = [Turn("assistant", "欢迎关注！"), U1, A1]
    assert trim(history) == history


def test_orphaned_tool_results_are_dropped_too() -> None:
    history = [U1, Turn("assistant", "调用工具"), Turn("tool", "结果"), A1, U2, A2]
    assert trim(history, max_turns=4) == [U2, A2]


def test_works_on_any_sequence_of_any_turn_type() -> None:
    turns = (("user", "q"), ("assistant", "a"))
    kept = trim_context(
        turns, max_turns=2, max_tokens=100, content=lambda t: t[1], role=lambda t: t[0]
    )
    assert kept == [("user", "q"), ("assistant", "a")]


@given(
    st.lists(st.tuples(st.sampled_from(["user", "assistant"]), st.text(max_size=40)), max_size=20),
    st.integers(min_value=0, max_value=25),
    st.integers(min_value=0, max_value=300),
)
def test_kept_turns_are_a_suffix_within_both_budgets(
    turns: list[tuple[str, str]], max_turns: int, max_tokens: int
) -> None:
    kept = trim_context(
        turns,
        max_turns=max_turns,
        max_tokens=max_tokens,
        content=lambda t: t[1],
        role=lambda t: t[0],
    )
    assert len(kept) <= max_turns
    assert sum(message_tokens(r, c) for r, c in kept) <= max_tokens
    if kept:
        assert turns[len(turns) - len(kept) :] == kept
        if len(kept) < len(turns):
            assert kept[0][0] == "user"
