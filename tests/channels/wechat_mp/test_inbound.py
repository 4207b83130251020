"""Every WeChat message type and event, from real-shaped XML, becomes the right ``Inbound``."""

from __future__ import annotations

import pytest

from chatgate.channels.wechat_mp.inbound import to_inbound
from chatgate.channels.wechat_mp.xml import parse_xml
from chatgate.core.messages import Inbound, Kind
from chatgate.errors import BadRequest

ACCOUNT = "gh_0123456789ab"
USER = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
HEAD = (
    f"<ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
    f"<FromUserName><![CDATA[{USER}]]></FromUserName>"
    "<CreateTime>1348831860</CreateTime>"
)


def inbound(body: str) -> Inbound:
    return to_inbound(parse_xml(f"<xml>{HEAD}{body}</xml>".encode(), max_bytes=64 * 1024))


# -- user messages ------------------------------------------------------------------------------


def test_text_message() -> None:
    got = inbound(
        "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好，帮我写首诗]]></Content>"
        "<MsgId>1234567890123456</MsgId>"
    )
    assert got == Inbound(
        channel="wechat_mp",
        account=ACCOUNT,
        user=USER,
        dedup_key="msg:1234567890123456",
        kind=Kind.TEXT,
        text="你好，帮我写首诗",
        created_at=1348831860.0,
        extra=(("MsgType", "text"), ("MsgId", "1234567890123456")),
    )
    assert str(got.conversation) == f"wechat_mp:{ACCOUNT}:{USER}"


def test_text_message_from_an_article_keeps_its_article_reference() -> None:
    got = inbound(
        "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[评论]]></Content>"
        "<MsgId>22</MsgId><MsgDataId>2247483650</MsgDataId><Idx>1</Idx>"
    )
    assert got.get("MsgDataId") == "2247483650"
    assert got.get("Idx") == "1"


def test_image_message() -> None:
    got = inbound(
        "<MsgType><![CDATA[image]]></MsgType>"
        "<PicUrl><![CDATA[http://mmbiz.qpic.cn/mmbiz_jpg/abc/0]]></PicUrl>"
        "<MediaId><![CDATA[media_id_img]]></MediaId><MsgId>1234567890123457</MsgId>"
    )
    assert got.kind is Kind.IMAGE
    assert got.media_url == "http://mmbiz.qpic.cn/mmbiz_jpg/abc/0"
    assert got.media_id == "media_id_img"
    assert got.text == ""
    assert got.dedup_key == "msg:1234567890123457"
    assert got.extra == (("MsgType", "image"), ("MsgId", "1234567890123457"))


def test_voice_message_uses_recognition_as_text() -> None:
    got = inbound(
        "<MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[media_id_voice]]></MediaId>"
        "<Format><![CDATA[amr]]></Format><Recognition><![CDATA[腾讯微信团队]]></Recognition>"
        "<MsgId>1234567890123458</MsgId>"
    )
    assert got.kind is Kind.VOICE
    assert got.text == "腾讯微信团队"
    assert got.media_id == "media_id_voice"
    assert got.get("Format") == "amr"
    assert got.get("Recognition") == "腾讯微信团队"


@pytest.mark.parametrize(
    "recognition", ["<Recognition><![CDATA[]]></Recognition>", ""], ids=["empty", "absent"]
)
def test_voice_message_without_recognition_has_empty_text(recognition: str) -> None:
    got = inbound(
        "<MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[m]]></MediaId>"
        f"<Format><![CDATA[speex]]></Format>{recognition}<MsgId>1</MsgId>"
    )
    assert got.kind is Kind.VOICE
    assert got.text == ""


@pytest.mark.parametrize("msg_type", ["video", "shortvideo"])
def test_video_and_short_video_messages(msg_type: str) -> None:
    got = inbound(
        f"<MsgType><![CDATA[{msg_type}]]></MsgType><MediaId><![CDATA[media_id_video]]></MediaId>"
        "<ThumbMediaId><![CDATA[thumb_media_id]]></ThumbMediaId><MsgId>1234567890123459</MsgId>"
    )
    assert got.kind is Kind.VIDEO
    assert got.media_id == "media_id_video"
    assert got.get("ThumbMediaId") == "thumb_media_id"
    assert got.get("MsgType") == msg_type


def test_location_message() -> None:
    got = inbound(
        "<MsgType><![CDATA[location]]></MsgType><Location_X>23.134521</Location_X>"
        "<Location_Y>113.358803</Location_Y><Scale>20</Scale>"
        "<Label><![CDATA[广州市天河区]]></Label><MsgId>1234567890123460</MsgId>"
    )
    assert got.kind is Kind.LOCATION
    assert got.text == ""
    assert got.extra == (
        ("MsgType", "location"),
        ("Location_X", "23.134521"),
        ("Location_Y", "113.358803"),
        ("Scale", "20"),
        ("Label", "广州市天河区"),
        ("MsgId", "1234567890123460"),
    )


def test_link_message() -> None:
    got = inbound(
        "<MsgType><![CDATA[link]]></MsgType><Title><![CDATA[公众平台官网链接]]></Title>"
        "<Description><![CDATA[公众平台官网链接]]></Description>"
        "<Url><![CDATA[https://mp.weixin.qq.com/]]></Url><MsgId>1234567890123461</MsgId>"
    )
    assert got.kind is Kind.LINK
    assert got.get("Title") == "公众平台官网链接"
    assert got.get("Url") == "https://mp.weixin.qq.com/"
    assert got.get("Description") == "公众平台官网链接"


def test_mini_program_page_is_other_and_keeps_its_fields() -> None:
    got = inbound(
        "<MsgType><![CDATA[miniprogrampage]]></MsgType><MsgId>1234567890123462</MsgId>"
        "<AppId><![CDATA[wx123123123]]></AppId><Title><![CDATA[title]]></Title>"
        "<PagePath><![CDATA[pages/index]]></PagePath><ThumbUrl><![CDATA[https://t/1]]></ThumbUrl>"
        "<ThumbMediaId><![CDATA[thumb]]></ThumbMediaId>"
    )
    assert got.kind is Kind.OTHER
    assert got.dedup_key == "msg:1234567890123462"
    assert got.get("MsgType") == "miniprogrampage"
    assert got.get("PagePath") == "pages/index"


def test_unknown_message_type_keeps_its_content_in_extra() -> None:
    got = inbound(
        "<MsgType><![CDATA[brand_new]]></MsgType><Content><![CDATA[c]]></Content><MsgId>5</MsgId>"
    )
    assert got.kind is Kind.OTHER
    assert got.text == ""
    assert got.get("Content") == "c"


# -- events -------------------------------------------------------------------------------------


def event(name: str, rest: str = "") -> Inbound:
    return inbound(f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{name}]]></Event>{rest}")


def test_plain_subscribe_event() -> None:
    got = event("subscribe", "<EventKey><![CDATA[]]></EventKey>")
    assert got == Inbound(
        channel="wechat_mp",
        account=ACCOUNT,
        user=USER,
        dedup_key=f"evt:{USER}:1348831860:subscribe:",
        kind=Kind.EVENT,
        event="subscribe",
        event_key=None,
        created_at=1348831860.0,
        extra=(("MsgType", "event"), ("EventKey", "")),
    )


def test_subscribe_from_a_parametric_qr_code_strips_the_scene_prefix() -> None:
    got = event(
        "subscribe",
        "<EventKey><![CDATA[qrscene_123123]]></EventKey><Ticket><![CDATA[TICKET]]></Ticket>",
    )
    assert got.event == "subscribe"
    assert got.event_key == "123123"
    assert got.get("EventKey") == "qrscene_123123"
    assert got.get("Ticket") == "TICKET"
    assert got.dedup_key == f"evt:{USER}:1348831860:subscribe:qrscene_123123"


def test_scan_event_by_a_follower_keeps_its_key_as_is() -> None:
    got = event(
        "SCAN", "<EventKey><![CDATA[qrscene_is_not_stripped_here]]></EventKey><Ticket>T</Ticket>"
    )
    assert got.event == "SCAN"
    assert got.event_key == "qrscene_is_not_stripped_here"


def test_unsubscribe_event_without_event_key() -> None:
    got = event("unsubscribe")
    assert got.kind is Kind.EVENT
    assert got.event == "unsubscribe"
    assert got.event_key is None
    assert got.dedup_key == f"evt:{USER}:1348831860:unsubscribe:"


def test_location_event() -> None:
    got = event(
        "LOCATION",
        "<Latitude>23.137466</Latitude><Longitude>113.352425</Longitude>"
        "<Precision>119.385040</Precision>",
    )
    assert got.event == "LOCATION"
    assert got.get("Latitude") == "23.137466"
    assert got.get("Longitude") == "113.352425"
    assert got.get("Precision") == "119.385040"


def test_menu_click_event() -> None:
    got = event("CLICK", "<EventKey><![CDATA[V1001_TODAY_MUSIC]]></EventKey>")
    assert got.event == "CLICK"
    assert got.event_key == "V1001_TODAY_MUSIC"
    assert got.dedup_key == f"evt:{USER}:1348831860:CLICK:V1001_TODAY_MUSIC"


def test_menu_view_event() -> None:
    got = event(
        "VIEW", "<EventKey><![CDATA[https://www.qq.com/]]></EventKey><MenuId>208396938</MenuId>"
    )
    assert got.event_key == "https://www.qq.com/"
    assert got.get("MenuId") == "208396938"


def test_scancode_event_flattens_its_scan_info() -> None:
    got = event(
        "scancode_waitmsg",
        "<EventKey><![CDATA[rselfmenu_0_0]]></EventKey><ScanCodeInfo>"
        "<ScanType><![CDATA[qrcode]]></ScanType><ScanResult><![CDATA[1]]></ScanResult>"
        "</ScanCodeInfo>",
    )
    assert got.event_key == "rselfmenu_0_0"
    assert got.get("ScanCodeInfo.ScanType") == "qrcode"
    assert got.get("ScanCodeInfo.ScanResult") == "1"


def test_template_job_event_dedups_on_its_msg_id() -> None:
    got = event(
        "TEMPLATESENDJOBFINISH",
        "<MsgID>200163836</MsgID><Status><![CDATA[failed:user block]]></Status>",
    )
    assert got.dedup_key == "evt:200163836"
    assert got.get("Status") == "failed:user block"


def test_mass_send_job_event_dedups_on_its_msg_id() -> None:
    got = event(
        "MASSSENDJOBFINISH",
        "<MsgID>1988</MsgID><Status><![CDATA[sendsuccess]]></Status><TotalCount>100</TotalCount>"
        "<FilterCount>80</FilterCount><SentCount>75</SentCount><ErrorCount>5</ErrorCount>",
    )
    assert got.dedup_key == "evt:1988"
    assert got.get("SentCount") == "75"


def test_two_events_in_one_second_get_different_dedup_keys() -> None:
    click = event("CLICK", "<EventKey><![CDATA[A]]></EventKey>")
    other_click = event("CLICK", "<EventKey><![CDATA[B]]></EventKey>")
    view = event("VIEW", "<EventKey><![CDATA[A]]></EventKey>")
    assert len({click.dedup_key, other_click.dedup_key, view.dedup_key}) == 3


def test_retries_of_one_event_share_a_dedup_key() -> None:
    assert event("CLICK", "<EventKey>K</EventKey>").dedup_key == (
        event("CLICK", "<EventKey>K</EventKey>").dedup_key
    )


# -- missing or malformed fields ----------------------------------------------------------------

COMPLETE_TEXT = {
    "ToUserName": ACCOUNT,
    "FromUserName": USER,
    "CreateTime": "1348831860",
    "MsgType": "text",
    "Content": "hi",
    "MsgId": "1",
}


@pytest.mark.parametrize(
    "missing", ["ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId"]
)
def test_a_message_missing_a_required_field_is_a_bad_request(missing: str) -> None:
    fields = {name: value for name, value in COMPLETE_TEXT.items() if name != missing}
    with pytest.raises(BadRequest, match=missing):
        to_inbound(fields)


@pytest.mark.parametrize("empty", ["ToUserName", "FromUserName", "MsgType", "MsgId"])
def test_an_empty_required_field_counts_as_missing(empty: str) -> None:
    with pytest.raises(BadRequest, match=empty):
        to_inbound({**COMPLETE_TEXT, empty: ""})


def test_the_complete_message_is_accepted() -> None:
    assert to_inbound(COMPLETE_TEXT).dedup_key == "msg:1"


def test_an_event_needs_no_msg_id_but_needs_its_event_name() -> None:
    fields = {**COMPLETE_TEXT, "MsgType": "event"}
    del fields["MsgId"]
    with pytest.raises(BadRequest, match="Event"):
        to_inbound(fields)
    assert to_inbound({**fields, "Event": "subscribe"}).kind is Kind.EVENT


@pytest.mark.parametrize("create_time", ["1348831860.5", "-1", "abc", "１２３"])
def test_a_create_time_that_is_not_an_integer_is_a_bad_request(create_time: str) -> None:
    with pytest.raises(BadRequest, match="CreateTime"):
        to_inbound({**COMPLETE_TEXT, "CreateTime": create_time})
