"""Inbound messages and answer records: the conveniences the hot path leans on."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from chatgate.core.messages import ConversationKey, Inbound, Kind
from chatgate.store.base import AnswerKind, AnswerRecord, AnswerStatus


def inbound(user: str = "u1") -> Inbound:
    return Inbound("wechat_mp", "gh_a", user, "msg:1", Kind.TEXT, text="hi", created_at=1.0)


def test_a_message_makes_its_conversation_key_once_and_a_changed_copy_its_own() -> None:
    message = inbound()
    assert message.conversation == ConversationKey("wechat_mp", "gh_a", "u1")
    assert message.conversation is message.conversation
    other = dataclasses.replace(message, user="u2")
    assert str(other.conversation) == "wechat_mp:gh_a:u2"
    assert str(message.conversation) == "wechat_mp:gh_a:u1"


def test_the_cached_key_leaves_equality_repr_and_pickling_alone() -> None:
    asked = inbound()
    _ = asked.conversation
    assert asked == inbound()
    assert repr(asked) == repr(inbound())
    assert pickle.loads(pickle.dumps(asked)) == asked


def test_with_changes_copies_every_other_field_and_refuses_unknown_names() -> None:
    record = AnswerRecord(
        id="a1",
        conversation="wechat_mp:gh_a:u1",
        dedup_key="msg:1",
        kind=AnswerKind.LLM,
        question="q",
        page_token="t",
        status=AnswerStatus.RUNNING,
        text="so far",
        created_at=1.0,
        updated_at=2.0,
        expires_at=3.0,
        seq=7,
        delivered_upto=2,
        meta={"k": "v"},
    )
    changed = record.with_changes(status=AnswerStatus.DONE, text="all")
    assert changed == dataclasses.replace(record, status=AnswerStatus.DONE, text="all")
    assert record.status is AnswerStatus.RUNNING  # the original is untouched
    with pytest.raises(TypeError):
        record.with_changes(colour="red")
