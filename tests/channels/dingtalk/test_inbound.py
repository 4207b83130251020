"""Robot callbacks become Inbound values: chats, mentions, message types, reply addresses."""

from __future__ import annotations

from typing import Any

import pytest

from chatgate.channels.dingtalk.inbound import (
    ReplyAddress,
    is_stale,
    strip_mention,
    to_inbound,
)
from chatgate.core.messages import Kind
from chatgate.errors import BadRequest

ROBOT = "dingrobot01"


def callback(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "conversationId": "cidSingle0001",
        "chatbotCorpId": "dingcorp",
        "chatbotUserId": "$:LWCP_v1:$bot",
        "msgId": "msgABC123",
        "senderNick": "张三",
        "isAdmin": False,
        "senderStaffId": "manager4220",
        "sessionWebhookExpiredTime": 1_700_005_400_000,
        "createAt": 1_700_000_000_000,
        "senderCorpId": "dingcorp",
        "conversationType": "1",
        "senderId": "$:LWCP_v1:$sender",
        "sessionWebhook": "https://oapi.dingtalk.com/robot/sendBySession?session=s1",
        "robotCode": ROBOT,
        "msgtype": "text",
        "text": {"content": " 你好 "},
    }
    data.update(changes)
    return data


def test_a_single_chat_text_message() -> None:
    inbound = to_inbound(callback(), robot_code="configured")
    assert (inbound.channel, inbound.account, inbound.user) == ("dingtalk", ROBOT, "manager4220")
    assert (inbound.kind, inbound.text, inbound.dedup_key) == (Kind.TEXT, "你好", "msgABC123")
    assert inbound.created_at == 1_700_000_000.0
    assert inbound.get("senderNick") == "张三"
    address = ReplyAddress.from_meta(dict(inbound.reply_to))
    assert address == ReplyAddress(
        conversation_type="1",
        conversation_id="cidSingle0001",
        staff_id="manager4220",
        robot_code=ROBOT,
        webhook="https://oapi.dingtalk.com/robot/sendBySession?session=s1",
        webhook_expires=1_700_005_400.0,
    )
    assert not address.group


@pytest.mark.parametrize(
    "content", [" 今天几点开会？", "@AI助手 今天几点开会？", "@AI助手\u2005今天几点开会？"]
)
def test_a_group_mention_is_stripped_and_each_member_has_a_conversation(content: str) -> None:
    data = callback(
        conversationType="2",
        conversationId="cidGroupXYZ==",
        conversationTitle="项目群",
        isInAtList=True,
        text={"content": content},
    )
    inbound = to_inbound(data, robot_code=ROBOT)
    assert inbound.text == "今天几点开会？"
    assert inbound.user == "cidGroupXYZ==/manager4220"
    assert str(inbound.conversation) == f"dingtalk:{ROBOT}:cidGroupXYZ==/manager4220"
    address = ReplyAddress.from_meta(dict(inbound.reply_to))
    assert address is not None and address.group and address.conversation_id == "cidGroupXYZ=="


def test_strip_mention_leaves_inner_mentions_and_plain_text_alone() -> None:
    assert strip_mention("@机器人 @李四 帮我看看") == "帮我看看"
    assert strip_mention("请把这个发给 @李四") == "请把这个发给 @李四"
    assert strip_mention("  没有提到谁  ") == "没有提到谁"


def test_an_outside_user_without_staff_id_is_keyed_by_sender_id() -> None:
    inbound = to_inbound(callback(senderStaffId=""), robot_code=ROBOT)
    assert inbound.user == "$:LWCP_v1:$sender"
    address = ReplyAddress.from_meta(dict(inbound.reply_to))
    assert address is not None and address.staff_id == ""


def test_a_custom_robot_without_robot_code_uses_the_configured_one() -> None:
    data = callback()
    del data["robotCode"]
    assert to_inbound(data, robot_code="configured").account == "configured"


@pytest.mark.parametrize(
    ("changes", "kind", "text", "media"),
    [
        (
            {
                "msgtype": "richText",
                "content": {"richText": [{"text": "看图"}, {"downloadCode": "d1"}]},
            },
            Kind.TEXT,
            "看图",
            None,
        ),
        (
            {"msgtype": "richText", "content": {"richText": [{"downloadCode": "d1"}]}},
            Kind.IMAGE,
            "",
            "d1",
        ),
        ({"msgtype": "picture", "content": {"downloadCode": "p1"}}, Kind.IMAGE, "", "p1"),
        (
            {
                "msgtype": "audio",
                "content": {"recognition": " 语音转的文字 ", "downloadCode": "a1"},
            },
            Kind.VOICE,
            "语音转的文字",
            "a1",
        ),
        ({"msgtype": "video", "content": {"downloadCode": "v1"}}, Kind.VIDEO, "", "v1"),
        ({"msgtype": "file", "content": {"fileName": "a.pdf"}}, Kind.OTHER, "", None),
        ({"msgtype": "unknownMsgType"}, Kind.OTHER, "", None),
    ],
    ids=["richtext", "richtext-image", "picture", "audio", "video", "file", "unknown"],
)
def test_message_types_map_onto_kinds(
    changes: dict[str, Any], kind: Kind, text: str, media: str | None
) -> None:
    inbound = to_inbound(callback(**changes), robot_code=ROBOT)
    assert (inbound.kind, inbound.text, inbound.media_id) == (kind, text, media)


@pytest.mark.parametrize(
    "changes",
    [
        {"msgId": ""},
        {"msgId": None},
        {"conversationType": "3"},
        {"senderStaffId": "", "senderId": ""},
        {"conversationType": "2", "conversationId": ""},
    ],
    ids=["empty-msgid", "no-msgid", "bad-type", "no-sender", "group-without-id"],
)
def test_callbacks_missing_what_a_reply_needs_are_bad_requests(changes: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        to_inbound(callback(**changes), robot_code=ROBOT)


def test_odd_field_types_do_not_crash_the_mapping() -> None:
    data = callback(text="not an object", createAt="soon", sessionWebhookExpiredTime=None)
    inbound = to_inbound(data, robot_code=ROBOT)
    assert inbound.text == "" and inbound.created_at > 0
    address = ReplyAddress.from_meta(dict(inbound.reply_to))
    assert address is not None and address.webhook_expires == 0.0


def test_webhook_usable_respects_the_expiry_and_the_margin() -> None:
    address = ReplyAddress("1", "cid", "u", ROBOT, "https://hook", webhook_expires=1000.0)
    assert address.webhook_usable(900.0, margin=30)
    assert not address.webhook_usable(980.0, margin=30)
    unknown = ReplyAddress("1", "cid", "u", ROBOT, "https://hook")
    assert unknown.webhook_usable(10**12, margin=30)
    assert not ReplyAddress("1", "cid", "u", ROBOT).webhook_usable(0.0, margin=30)


def test_meta_without_a_dingtalk_address_gives_none() -> None:
    assert ReplyAddress.from_meta({}) is None
    assert ReplyAddress.from_meta({"images": "x"}) is None


def test_stale_means_older_than_the_max_age_and_zero_disables_it() -> None:
    inbound = to_inbound(callback(), robot_code=ROBOT)
    created = inbound.created_at
    assert is_stale(inbound, now=created + 301, max_age=300)
    assert not is_stale(inbound, now=created + 299, max_age=300)
    assert not is_stale(inbound, now=created + 10**6, max_age=0)
