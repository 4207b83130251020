"""The fake LLM's scripting is a pure function of the messages."""

from __future__ import annotations

import pytest

from chatgate.sim.llm_script import Script, filler, plan


@pytest.mark.parametrize("n_bytes", [0, 1, 2, 3, 100, 2047, 2048, 2049, 6000])
def test_filler_is_exactly_the_asked_number_of_bytes(n_bytes: int) -> None:
    assert len(filler(n_bytes).encode()) == n_bytes


def test_filler_numbers_its_sentences_in_order() -> None:
    text = filler(3000)
    assert text.startswith("（1.1）")
    assert text.index("（1.4）") < text.index("（2.1）") < text.index("（3.1）")


def test_directives_are_read_and_stripped_from_the_question() -> None:
    script = plan([{"role": "user", "content": "天气 [delay=2.5] [ttft=1] [fail=429x2] [hang]"}])
    assert script == Script(
        text="你问：天气。这是模拟回答。", delay=2.5, ttft=1.0, fail=429, fail_times=2, hang=True
    )


def test_only_the_last_user_message_steers() -> None:
    script = plan(
        [
            {"role": "user", "content": "old [fail=500]"},
            {"role": "system", "content": "[hang]"},
            {"role": "user", "content": "new"},
        ]
    )
    assert script == Script(text="你问：new。这是模拟回答。")


def test_malformed_values_are_ignored() -> None:
    script = plan([{"role": "user", "content": "x [delay=soon] [fail=abc] [len=-3]"}])
    assert (script.delay, script.fail, script.text) == (None, None, "你问：x。这是模拟回答。")


def test_previous_without_history_says_so() -> None:
    assert plan([{"role": "user", "content": "what was my previous question?"}]).text == (
        "你之前没有说过别的话。"
    )


def test_text_parts_are_read_from_list_content() -> None:
    content = [{"type": "text", "text": "图里"}, {"type": "image_url", "image_url": {}}]
    assert plan([{"role": "user", "content": content}]).text == "你问：图里。这是模拟回答。"
