"""``chatgate demo --channel dingtalk`` runs the whole DingTalk loop offline and ends by itself."""

from __future__ import annotations

import io

import pytest

from chatgate.cli import _parser
from chatgate.demo_dingtalk import run_dingtalk_demo

pytestmark = pytest.mark.slow


def test_the_cli_takes_the_channel_option_and_keeps_wechat_the_default() -> None:
    assert _parser().parse_args(["demo"]).channel == "wechat"
    assert _parser().parse_args(["demo", "--channel", "dingtalk"]).channel == "dingtalk"
    with pytest.raises(SystemExit):
        _parser().parse_args(["demo", "--channel", "qq"])


async def test_the_demo_shows_every_route_and_one_llm_call_per_question() -> None:
    out = io.StringIO()
    assert await run_dingtalk_demo(out) == 0
    text = out.getvalue()
    assert "机器人 (sessionWebhook)" in text
    assert "机器人 (OpenAPI)" in text
    assert "机器人 (AI card)" in text and "(完成)" in text
    assert "LLM calls: 5 for 5 questions (one per question)" in text
