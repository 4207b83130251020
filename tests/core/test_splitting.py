"""Splitting answers into parts under WeChat's UTF-8 byte limit."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgate.core.splitting import split_text, take_part, utf8_len

WECHAT_LIMIT = 2048
CONTINUE = "\n\n「回复1继续」"


def walk(text: str, max_bytes: int, suffix: str = "") -> list[str]:
    parts: list[str] = []
    offset = 0
    while offset < len(text):
        part, offset = take_part(text, offset, max_bytes, suffix)
        parts.append(part)
    return parts


# --- utf8_len ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0), ("a", 1), ("é", 2), ("中", 3), ("😀", 4), ("中a😀", 8), ("e\u0301", 3)],
)
def test_utf8_len_counts_utf8_bytes(text: str, expected: int) -> None:
    assert utf8_len(text) == expected


# --- split_text: basics -----------------------------------------------------------------------


def test_empty_text_gives_no_parts() -> None:
    assert split_text("", 100) == []


def test_text_that_fits_exactly_is_one_part() -> None:
    text = "中" * 10  # 30 bytes
    assert split_text(text, 30) == [text]


def test_one_byte_over_the_limit_makes_two_parts() -> None:
    text = "中" * 10 + "a"
    parts = split_text(text, 30)
    assert len(parts) == 2
    assert "".join(parts) == text


@pytest.mark.parametrize("max_bytes", [-1, 0, 3])
def test_limit_too_small_for_a_code_point_is_refused(max_bytes: int) -> None:
    with pytest.raises(ValueError):
        split_text("hello", max_bytes)


# --- split_text: boundary preference -----------------------------------------------------------


def test_long_chinese_answer_splits_at_paragraph_and_sentence_ends() -> None:
    sentence = "人工智能正在改变我们的生活方式，也在改变我们思考问题的角度。"  # 90 bytes
    paragraphs = [sentence * n for n in (15, 10, 20, 12, 12)]
    text = "\n\n".join(paragraphs)
    assert 5900 < utf8_len(text) < 6300

    parts = split_text(text, WECHAT_LIMIT)

    assert "".join(parts) == text
    assert len(parts) == 4
    for part in parts:
        assert 0 < utf8_len(part) <= WECHAT_LIMIT
    for part in parts[:-1]:
        assert part.endswith(("。\n\n", "。")), part[-10:]
    # The paragraph breaks that fall in a part's upper half are where parts end.
    assert parts[0].endswith("\n\n")
    for part in parts[1:]:
        assert part.startswith("人工智能")


def test_paragraph_break_beats_a_later_sentence_end() -> None:
    first = "甲" * 20 + "。" + "乙" * 5  # 78 bytes
    text = first + "\n\n" + "丙。" * 40
    part, _ = take_part(text, 0, 100)
    assert part == first + "\n\n"


def test_paragraph_break_in_the_first_half_is_passed_over_for_a_fuller_part() -> None:
    text = "短句。\n\n" + "长段落里的句子。" * 20
    part, _ = take_part(text, 0, 100)
    assert utf8_len(part) > 50
    assert part.endswith("。")
    assert "\n\n" in part


def test_a_boundary_in_the_first_half_still_beats_cutting_mid_word() -> None:
    text = "Intro: " + "x" * 200
    part, offset = take_part(text, 0, 100)
    assert part == "Intro: "
    assert text[offset:].startswith("x")


def test_line_break_beats_sentence_end() -> None:
    text = "第一行没有句号\n第二行。第三句。" + "后" * 40
    part, _ = take_part(text, 0, 48)
    assert part == "第一行没有句号\n第二行。第三句。"
    part, _ = take_part("第一行的字数要多一些\n第二行。第三句。" + "后" * 40, 0, 48)
    assert part == "第一行的字数要多一些\n"


def test_sentence_end_beats_clause_mark() -> None:
    text = "一二三四五。六七八，九十" + "后" * 40
    part, _ = take_part(text, 0, 36)
    assert part == "一二三四五。"


def test_clause_mark_beats_space_and_space_beats_mid_word() -> None:
    part, _ = take_part("alpha beta, gamma delta epsilon zeta", 0, 20)
    assert part == "alpha beta, "
    part, _ = take_part("alphabet soup tastes wonderful", 0, 16)
    assert part == "alphabet soup "


def test_punctuation_stays_with_its_sentence() -> None:
    text = "他说：“今天很好。”然后走了很远很远的路" + "路" * 30
    part, _ = take_part(text, 0, 60)
    assert part == "他说：“今天很好。”"


def test_repeated_sentence_marks_stay_together() -> None:
    text = "真的吗？！" + "后" * 30
    part, _ = take_part(text, 0, 20)
    assert part == "真的吗？！"


def test_english_sentence_keeps_its_trailing_space() -> None:
    text = "This is the first sentence. Here is another one that is long enough."
    part, offset = take_part(text, 0, 40)
    assert part == "This is the first sentence. "
    assert text[offset] == "H"


@pytest.mark.parametrize(
    "text",
    [
        "Version 3.14159 runs everywhere with everything",
        "visit example.com?a=1,b=2 for everything",
    ],
)
def test_dots_and_marks_inside_tokens_are_not_sentence_ends(text: str) -> None:
    parts = split_text(text, 20)
    assert "".join(parts) == text
    for part in parts[:-1]:
        assert part.endswith(" ")


def test_ascii_mark_before_chinese_is_a_sentence_end() -> None:
    text = "我用的是Python!然后" + "后" * 30
    part, _ = take_part(text, 0, 24)
    assert part == "我用的是Python!"


def test_numbered_list_marker_is_not_a_sentence_end() -> None:
    text = "1. first item here\n2. second item here"
    parts = split_text(text, 16)
    assert "".join(parts) == text
    assert not any(part.endswith("1. ") or part.endswith("2. ") for part in parts)


def test_without_any_boundary_parts_are_filled_to_the_limit() -> None:
    text = "字" * 100
    parts = split_text(text, 31)
    assert [utf8_len(part) for part in parts] == [30] * 10
    assert "".join(parts) == text


def test_whitespace_at_a_boundary_ends_the_part_before_it() -> None:
    text = "\n\n".join(["段落内容。" * 8] * 4)
    parts = split_text(text, 150)
    assert "".join(parts) == text
    for part in parts[1:]:
        assert not part[0].isspace()


def test_blank_line_cut_by_the_limit_still_counts_as_a_paragraph_break() -> None:
    first = "甲" * 33  # 99 bytes, so the limit of 100 falls inside "\n\n"
    text = first + "\n\n" + "乙。" * 30
    part, offset = take_part(text, 0, 100)
    assert part == first + "\n"
    assert text[offset:].startswith("\n乙")


# --- split_text: never breaking a character -----------------------------------------------------


def test_combining_marks_stay_with_their_base() -> None:
    text = "e\u0301" * 20  # 3 bytes per accented letter
    for part in split_text(text, 16):
        assert unicodedata.combining(part[0]) == 0
        assert utf8_len(part) == 15


def test_flags_are_not_split_into_regional_indicators() -> None:
    text = "🇨🇳🇺🇸🇯🇵🇫🇷🇩🇪"  # 8 bytes per flag
    for part in split_text(text, 20):
        assert len(part) % 2 == 0


def test_zwj_sequences_and_skin_tones_stay_whole() -> None:
    technologist = "👩\u200d💻"  # 11 bytes
    thumbs = "👍🏽"  # 8 bytes
    text = (technologist + thumbs) * 6
    for part in split_text(text, 24):
        assert part.startswith((technologist, thumbs))
        assert not part.endswith("\u200d")
        assert not part.startswith("🏽")


def test_surrogate_pair_left_in_a_str_is_not_split() -> None:
    pair = "\ud83d\ude00"  # as json.loads(..., strict) can leave it: 6 bytes with surrogatepass
    assert utf8_len(pair) == 6
    parts = split_text(pair * 10, 16)
    assert "".join(parts) == pair * 10
    assert all(part.startswith("\ud83d") and utf8_len(part) == 12 for part in parts[:-1])


def test_crlf_is_not_split() -> None:
    text = "ab\r\ncd\r\nef"
    for max_bytes in range(4, 11):
        for part in split_text(text, max_bytes):
            assert not part.startswith("\n")


def test_grapheme_larger_than_the_limit_falls_back_to_code_points() -> None:
    family = "👨\u200d👩\u200d👧\u200d👦"  # 25 bytes
    parts = split_text(family * 2, 16)
    assert "".join(parts) == family * 2
    assert all(utf8_len(part) <= 16 for part in parts)


# --- take_part -----------------------------------------------------------------------------------


def test_take_part_returns_the_whole_rest_when_it_fits_without_a_suffix() -> None:
    text = "开头。" + "剩下的正好装得下" * 2
    rest_start = 3
    assert utf8_len(text[rest_start:]) == 48
    assert take_part(text, rest_start, 48, suffix=CONTINUE) == (text[rest_start:], len(text))


def test_take_part_leaves_room_for_the_suffix() -> None:
    text = "第一句话。" * 200
    part, offset = take_part(text, 0, 100, suffix=CONTINUE)
    assert utf8_len(part + CONTINUE) <= 100
    assert part.endswith("。")
    assert offset == len(part)


def test_take_part_at_the_end_returns_nothing() -> None:
    assert take_part("abc", 3, 16) == ("", 3)


@pytest.mark.parametrize("start", [-1, 4])
def test_take_part_refuses_an_offset_outside_the_text(start: int) -> None:
    with pytest.raises(ValueError):
        take_part("abc", start, 16)


def test_take_part_refuses_a_suffix_that_leaves_no_room() -> None:
    with pytest.raises(ValueError):
        take_part("x" * 100, 0, 20, suffix="「回复1继续」")  # 19 bytes


def test_passive_delivery_walk_fits_every_message() -> None:
    text = "\n\n".join(f"这是第{i}段，内容比较长，需要分多条消息发送。" * 12 for i in range(12))
    parts = walk(text, WECHAT_LIMIT, CONTINUE)
    assert "".join(parts) == text
    for part in parts[:-1]:
        assert utf8_len(part + CONTINUE) <= WECHAT_LIMIT
    assert utf8_len(parts[-1]) <= WECHAT_LIMIT


def test_take_part_without_suffix_agrees_with_split_text() -> None:
    text = "Hello. 你好！\n\n" * 40 + "结尾，没有句号 and some words"
    assert walk(text, 64) == split_text(text, 64)


# --- properties -------------------------------------------------------------------------------

_ALPHABET = [
    *"中文字符测试。！？，、；：“”（）",
    *"abcXYZ019 .,;:!?'\"()-/",
    "\n",
    "\n\n",
    "\r\n",
    "\t",
    "😀",
    "👍🏽",
    "👩\u200d💻",
    "🇨🇳",
    "e\u0301",
    "\u3000",
    "\u200d",
]
texts = st.one_of(
    st.lists(st.sampled_from(_ALPHABET), max_size=400).map("".join),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
)
limits = st.integers(min_value=16, max_value=300)
suffixes = st.sampled_from(["", "…", CONTINUE, "[1]"])


@settings(max_examples=300, deadline=None)
@given(texts, limits)
def test_split_parts_fit_join_to_the_text_and_are_never_empty(text: str, max_bytes: int) -> None:
    parts = split_text(text, max_bytes)
    assert "".join(parts) == text
    for part in parts:
        assert part
        assert utf8_len(part) <= max_bytes


@settings(max_examples=300, deadline=None)
@given(texts, limits, suffixes)
def test_take_part_walk_reaches_the_end_and_leaves_room_for_the_suffix(
    text: str, max_bytes: int, suffix: str
) -> None:
    max_bytes += utf8_len(suffix)
    parts = walk(text, max_bytes, suffix)
    assert "".join(parts) == text
    for part in parts[:-1]:
        assert part
        assert utf8_len(part + suffix) <= max_bytes
    if parts:
        assert utf8_len(parts[-1]) <= max_bytes


@settings(max_examples=200, deadline=None)
@given(texts, limits)
def test_take_part_walk_without_suffix_is_split_text(text: str, max_bytes: int) -> None:
    assert walk(text, max_bytes) == split_text(text, max_bytes)
