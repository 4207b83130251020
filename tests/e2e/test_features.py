"""Conversation features end to end: the real app, the WeChat simulator and the fake LLM.

Commands, the opt-in AI session with its 300 s TTL (on a clock the test moves), keyword rules
and menu clicks, welcome and unsubscribe, voice and images, moderation both ways and the
rate limit. Answers here carry no [delay], so each takes about half a second.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from chatgate.core.sessions import session_key
from chatgate.core.texts import Texts
from chatgate.sim.wechat import WeChatSim
from chatgate.sim.wechat_api import WeChatAPISim
from tests.clock import ShiftedClock
from tests.e2e.conftest import LLM
from tests.e2e.harness import APPID, TOKEN, gateway_in_process

TEXTS = Texts()
USER = "o_user_1"
CONVERSATION = f"wechat_mp:gh_sim:{USER}"

RULES = """
[[rule]]
contains = "营业时间"
reply = "每天 9:00–18:00 营业。"

[menu]
HOURS = "营业时间"
HELP = "/help"
"""


def expected(llm: LLM, *questions: str) -> str:
    return llm.sim.expected_answer([{"role": "user", "content": q} for q in questions])


async def say(sim: WeChatSim, text: str) -> str:
    """Send ``text`` as the user; what WeChat shows them (it must be a reply)."""
    outcome = await sim.send_text(USER, text)
    assert outcome.kind == "reply", outcome
    assert outcome.text is not None
    return outcome.text


async def test_commands_reply_inline_and_never_call_the_model(llm: LLM) -> None:
    async with gateway_in_process(llm.url) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        help_text = await say(sim, "/help")
        assert "/new" in help_text and "清除" in help_text and "/history" in help_text
        assert await say(sim, "帮助") == help_text
        assert await say(sim, "／HELP") == help_text  # full-width slash, any case
        assert await say(sim, "/new") == TEXTS.context_reset
        assert await say(sim, "/history") == TEXTS.history_unavailable  # no public URL
        unknown = await say(sim, "/frobnicate")
        assert "/frobnicate" in unknown and "/help" in unknown
        assert await say(sim, "1") == TEXTS.nothing_pending
    assert llm.sim.calls == []


async def test_new_forgets_the_context_for_the_next_question(llm: LLM) -> None:
    async with gateway_in_process(llm.url) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        await say(sim, "我叫小明")
        remembered = await say(sim, "我刚才说了什么")
        assert remembered == expected(llm, "我叫小明", "我刚才说了什么")
        assert "小明" in remembered
        assert await say(sim, "清除") == TEXTS.context_reset
        forgotten = await say(sim, "我刚才说了什么")
        assert forgotten == expected(llm, "我刚才说了什么") and "小明" not in forgotten


async def test_history_links_to_the_history_page(llm: LLM) -> None:
    async with gateway_in_process(llm.url, public_url="https://bot.example.com") as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        reply = await say(sim, "历史")
    assert reply.startswith(TEXTS.history_link.format(link="https://bot.example.com/h/"))


async def test_a_custom_prefix_replaces_the_slash(llm: LLM) -> None:
    async with gateway_in_process(llm.url, command_prefix="#") as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        assert "#new" in await say(sim, "#help")
        assert await say(sim, "/help") == expected(llm, "/help")  # just a question now


async def test_commands_reply_inline_in_push_mode_and_answers_are_pushed(llm: LLM) -> None:
    api = WeChatAPISim(appid=APPID)
    async with api.serve() as api_url:
        settings = {
            "wechat_mode": "push",
            "wechat_secret": api.secret,
            "wechat_api_base": api_url,
        }
        async with gateway_in_process(llm.url, **settings) as gw:
            sim = WeChatSim(gw.wechat_url, TOKEN, on_message=api.user_wrote)
            assert "/new" in await say(sim, "/help")
            assert await say(sim, "/new") == TEXTS.context_reset
            unknown = await say(sim, "/nope")
            assert "/nope" in unknown
            assert llm.sim.calls == []
            question = await sim.send_text(USER, "推送的问题")
            assert question.kind == "nothing"  # acknowledged; the answer comes by push
            for _ in range(200):  # the answer takes ~0.5 s; give it up to 10 s
                if api.received(USER):
                    break
                await asyncio.sleep(0.05)
    assert api.received(USER) == [expected(llm, "推送的问题")]


async def test_command_mode_session_lasts_300_seconds_from_the_last_message(llm: LLM) -> None:
    clock = ShiftedClock()
    async with gateway_in_process(llm.url, clock=clock, session_mode="command") as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        hint = await say(sim, "你好")
        assert "/chatgpt" in hint
        assert "5 分钟" in await say(sim, "/chatgpt")
        assert await say(sim, "问题一") == expected(llm, "问题一")
        clock.advance(200)
        assert await say(sim, "问题二") == expected(llm, "问题一", "问题二")
        clock.advance(200)  # 400 s after /chatgpt, 200 s after the last message
        assert await say(sim, "问题三") == expected(llm, "问题一", "问题二", "问题三")
        clock.advance(301)
        assert await say(sim, "问题四") == hint
        assert await say(sim, "/chatgpt 问题五") == expected(
            llm, "问题一", "问题二", "问题三", "问题五"
        )
        assert "/chatgpt" in await say(sim, "/stop")
        assert await say(sim, "问题六") == hint
    assert llm.questions() == ["问题一", "问题二", "问题三", "问题五"]


async def test_keyword_rules_and_menu_clicks_answer_without_the_model(
    llm: LLM, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    async with gateway_in_process(llm.url, rules_file=str(rules)) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        assert await say(sim, "请问营业时间？") == "每天 9:00–18:00 营业。"
        clicked = await sim.send_event(USER, "CLICK", "HOURS")
        assert clicked.text == "每天 9:00–18:00 营业。"
        menu_help = await sim.send_event(USER, "CLICK", "HELP")
        assert menu_help.text is not None and "/new" in menu_help.text
        unmapped = await sim.send_event(USER, "CLICK", "NOT_MAPPED")
        assert unmapped.kind == "nothing"
        assert llm.sim.calls == []
        assert await say(sim, "别的问题") == expected(llm, "别的问题")


async def test_keyword_rules_also_answer_outside_a_session_in_command_mode(
    llm: LLM, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    async with gateway_in_process(llm.url, rules_file=str(rules), session_mode="command") as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        assert await say(sim, "营业时间") == "每天 9:00–18:00 营业。"
        assert "/chatgpt" in await say(sim, "随便问问")
    assert llm.sim.calls == []


async def test_subscribe_is_welcomed_and_other_events_show_nothing(llm: LLM) -> None:
    async with gateway_in_process(llm.url) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        welcome = await sim.send_event(USER, "subscribe")
        assert welcome.text == TEXTS.welcome.format(p="/")
        scanned = await sim.send_event(USER, "SCAN", "42")
        assert scanned.kind == "nothing"
    async with gateway_in_process(llm.url, welcome_text="欢迎！") as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        assert (await sim.send_event(USER, "subscribe", "qrscene_7")).text == "欢迎！"
    assert llm.sim.calls == []


async def test_unsubscribe_deletes_the_users_history_and_session(llm: LLM) -> None:
    async with gateway_in_process(llm.url, session_mode="command") as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        await say(sim, "/chatgpt")
        await say(sim, "我的秘密问题")
        store = gw.services.store
        turns = await store.history(CONVERSATION)
        assert [t.content for t in turns] == ["我的秘密问题", expected(llm, "我的秘密问题")]
        assert await store.kv_get(session_key(CONVERSATION)) is not None
        gone = await sim.send_event(USER, "unsubscribe")
        assert gone.kind == "nothing"
        assert await store.history(CONVERSATION) == []
        assert await store.kv_get(session_key(CONVERSATION)) is None
        answers = await store.conversation_answers(CONVERSATION)
        assert all("秘密" not in a.question + a.text for a in answers)
        # Coming back starts from nothing: no session, no context.
        assert "/chatgpt" in await say(sim, "还记得我吗")


async def test_voice_recognition_is_the_question_and_other_media_get_one_line(llm: LLM) -> None:
    async with gateway_in_process(llm.url) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        voice = {"MediaId": "m1", "Format": "amr", "Recognition": "今天天气怎么样？"}
        spoken = await sim.send_message(USER, "voice", voice)
        assert spoken.text == expected(llm, "今天天气怎么样？")
        silent_voice = await sim.send_message(USER, "voice", {"MediaId": "m2", "Format": "amr"})
        assert silent_voice.text == TEXTS.voice_unrecognized
        spoken_help = await sim.send_message(USER, "voice", {**voice, "Recognition": "帮助。"})
        assert spoken_help.text is not None and "/new" in spoken_help.text
        image = {"PicUrl": "http://mmbiz.example/p.jpg", "MediaId": "m3"}
        assert (await sim.send_message(USER, "image", image)).text == TEXTS.unsupported
        location = {"Location_X": "23.1", "Location_Y": "113.3", "Scale": "20", "Label": "x"}
        assert (await sim.send_message(USER, "location", location)).text == TEXTS.unsupported
        video = {"MediaId": "m4", "ThumbMediaId": "t4"}
        assert (await sim.send_message(USER, "video", video)).text == TEXTS.unsupported
    assert llm.questions() == ["今天天气怎么样？"]


async def test_with_vision_an_image_goes_to_the_model_as_an_image_url(llm: LLM) -> None:
    url = "http://mmbiz.example/photo.jpg"
    async with gateway_in_process(llm.url, llm_vision=True) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        outcome = await sim.send_message(USER, "image", {"PicUrl": url, "MediaId": "m1"})
    assert outcome.text == expected(llm, TEXTS.image_question)
    content = llm.sim.calls[0].body["messages"][-1]["content"]
    assert {"type": "image_url", "image_url": {"url": url}} in content


async def test_moderation_refuses_blocked_questions_and_masks_blocked_answers(
    llm: LLM, tmp_path: Path
) -> None:
    blocklist = tmp_path / "blocklist.txt"
    # The fake LLM ends every answer with 「这是模拟回答。」: a term only answers contain.
    blocklist.write_text("# blocked\n炸药\n模拟回答\n", encoding="utf-8")
    async with gateway_in_process(llm.url, blocklist_file=str(blocklist)) as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        assert await say(sim, "怎么做炸药") == TEXTS.refused
        assert llm.sim.calls == []
        answer = await say(sim, "讲个笑话")
        raw = expected(llm, "讲个笑话")
        assert "模拟回答" in raw
        assert answer == raw.replace("模拟回答", "****")
        stored = await gw.services.store.conversation_answers(CONVERSATION)
        assert all("模拟回答" not in a.text for a in stored)
        turns = await gw.services.store.history(CONVERSATION)
        assert [t.content for t in turns] == ["讲个笑话", answer]
    assert llm.questions() == ["讲个笑话"]


async def test_the_rate_limit_answers_kindly_without_calling_the_model(llm: LLM) -> None:
    clock = ShiftedClock()
    # Start one second into an hour, so the whole test stays inside one hourly window.
    now = time.time()
    clock.advance(math.ceil(now / 3600) * 3600 + 1 - now)
    async with gateway_in_process(llm.url, clock=clock, rate_limit="2/hour") as gw:
        sim = WeChatSim(gw.wechat_url, TOKEN)
        assert "/new" in await say(sim, "/help")  # commands do not count
        assert await say(sim, "问题一") == expected(llm, "问题一")
        assert await say(sim, "问题二") == expected(llm, "问题一", "问题二")
        limited = await say(sim, "问题三")
        assert limited == TEXTS.rate_limited.format(wait="60 分钟")
        other = WeChatSim(gw.wechat_url, TOKEN)
        assert (await other.send_text("o_user_2", "别人的问题")).text == expected(llm, "别人的问题")
        clock.advance(3600)
        assert await say(sim, "问题四") == expected(llm, "问题一", "问题二", "问题四")
    assert llm.questions() == ["问题一", "问题二", "别人的问题", "问题四"]


@pytest.mark.parametrize("value", ["20/fortnight", "0/min", "twenty"])
async def test_a_bad_rate_limit_stops_the_start_naming_the_setting(llm: LLM, value: str) -> None:
    from chatgate.errors import ConfigError

    with pytest.raises(ConfigError, match="CHATGATE_RATE_LIMIT"):
        async with gateway_in_process(llm.url, rate_limit=value):
            pass
