"""cut_parts: a whole answer in parts that each fit, for channels that send them all at once."""

from __future__ import annotations

from chatgate.core.delivery import Surface, cut_parts
from chatgate.core.splitting import utf8_len


def test_short_text_is_one_part_and_empty_text_none() -> None:
    surface = Surface(max_bytes=100)
    [part] = cut_parts("你好，世界", surface)
    assert (part.text, part.upto, part.more) == ("你好，世界", 5, False)
    assert cut_parts("", surface) == []
    assert cut_parts("   \n\n  ", surface) == []


def test_long_text_is_cut_at_paragraphs_under_the_limit_without_a_continue_suffix() -> None:
    paragraphs = [f"第{i}段。" + "内容" * 40 for i in range(12)]
    text = "\n\n".join(paragraphs)
    parts = cut_parts(text, Surface(max_bytes=600))
    assert len(parts) > 2
    assert all(utf8_len(p.text) <= 600 for p in parts)
    assert all("回复1" not in p.text for p in parts)
    assert [p.more for p in parts] == [True] * (len(parts) - 1) + [False]
    assert parts[-1].upto == len(text)
    # Lossless apart from the whitespace at the cuts: every paragraph is in exactly one part.
    joined = "\n\n".join(p.text for p in parts)
    assert joined == text


def test_start_skips_what_was_already_delivered() -> None:
    text = "first paragraph.\n\nsecond paragraph."
    [part] = cut_parts(text, Surface(max_bytes=100), start=18)
    assert part.text == "second paragraph."


def test_a_code_block_cut_in_two_is_closed_and_reopened() -> None:
    code = "\n".join(f"print({i})" for i in range(60))
    text = f"Intro.\n\n```\n{code}\n```\n\nOutro."
    parts = cut_parts(text, Surface(max_bytes=300))
    assert len(parts) >= 3
    assert all(utf8_len(p.text) <= 300 for p in parts)
    inner = parts[1:-1]
    assert all(p.text.startswith("```\n") and p.text.endswith("\n```") for p in inner)
    assert all(p.text.count("```") % 2 == 0 for p in parts)


def test_rendering_is_measured_after_it_runs() -> None:
    shout = Surface(max_bytes=200, render=lambda text: text.upper() + "!!!!")
    parts = cut_parts("word " * 200, shout)
    assert all(utf8_len(p.text) <= 200 and p.text.endswith("!!!!") for p in parts)
