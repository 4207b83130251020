"""A channel's reply address travels from the Inbound into the answer's meta."""

from __future__ import annotations

from chatgate.core.messages import Inbound, Kind
from chatgate.store.base import AnswerKind
from tests.core.conftest import Core

ADDRESS = (("dingtalk.webhook", "https://hook/1"), ("dingtalk.conversation", "cid1"))


async def test_reply_to_is_kept_in_the_meta_of_model_answers_and_fixed_replies(
    core: Core,
) -> None:
    ask = Inbound("dingtalk", "bot", "u1", "m1", Kind.TEXT, text="q", reply_to=ADDRESS)
    hint = Inbound("dingtalk", "bot", "u1", "m2", Kind.IMAGE, reply_to=ADDRESS)
    asked = await core.dispatcher.accept(ask)
    hinted = await core.dispatcher.accept(hint)
    assert asked.answer.kind is AnswerKind.LLM and hinted.answer.kind is AnswerKind.REPLY
    for ticket in (asked, hinted):
        stored = await core.store.get_answer(ticket.answer.id)
        assert stored is not None
        assert stored.meta["dingtalk.webhook"] == "https://hook/1"
        assert stored.meta["dingtalk.conversation"] == "cid1"


async def test_without_reply_to_the_meta_stays_empty(core: Core) -> None:
    ticket = await core.dispatcher.accept(Inbound("wechat_mp", "gh", "u1", "m1", Kind.TEXT, "q"))
    assert ticket.answer.meta == {}
