"""Safe XML parsing (size, DTDs, entity bombs, shape) and the CDATA reply builder."""

from __future__ import annotations

import random

import pytest

from chatgate.channels.wechat_mp.xml import MAX_NESTING, build_xml, parse_xml, text_reply
from chatgate.errors import BadRequest

LIMIT = 64 * 1024

TEXT_MESSAGE = """<xml>
  <ToUserName><![CDATA[gh_0123456789ab]]></ToUserName>
  <FromUserName><![CDATA[oUser_openid_123]]></FromUserName>
  <CreateTime>1348831860</CreateTime>
  <MsgType><![CDATA[text]]></MsgType>
  <Content><![CDATA[你好 <world> & ]]></Content>
  <MsgId>1234567890123456</MsgId>
</xml>""".encode()


def test_parse_xml_returns_flat_fields_from_cdata_and_bare_text() -> None:
    assert parse_xml(TEXT_MESSAGE, max_bytes=LIMIT) == {
        "ToUserName": "gh_0123456789ab",
        "FromUserName": "oUser_openid_123",
        "CreateTime": "1348831860",
        "MsgType": "text",
        "Content": "你好 <world> & ",
        "MsgId": "1234567890123456",
    }


def test_parse_xml_gives_empty_elements_an_empty_string() -> None:
    body = b"<xml><EventKey><![CDATA[]]></EventKey><Ticket/></xml>"
    assert parse_xml(body, max_bytes=LIMIT) == {"EventKey": "", "Ticket": ""}


def test_parse_xml_flattens_nested_fields_into_dotted_paths() -> None:
    body = b"""<xml><Event><![CDATA[scancode_waitmsg]]></Event>
    <ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>
    <ScanResult><![CDATA[https://example.com/x]]></ScanResult></ScanCodeInfo></xml>"""
    assert parse_xml(body, max_bytes=LIMIT) == {
        "Event": "scancode_waitmsg",
        "ScanCodeInfo.ScanType": "qrcode",
        "ScanCodeInfo.ScanResult": "https://example.com/x",
    }


def test_parse_xml_keeps_the_first_value_of_a_repeated_nested_path() -> None:
    body = b"""<xml><SendPicsInfo><Count>2</Count><PicList>
    <item><PicMd5Sum><![CDATA[first]]></PicMd5Sum></item>
    <item><PicMd5Sum><![CDATA[second]]></PicMd5Sum></item>
    </PicList></SendPicsInfo></xml>"""
    assert parse_xml(body, max_bytes=LIMIT) == {
        "SendPicsInfo.Count": "2",
        "SendPicsInfo.PicList.item.PicMd5Sum": "first",
    }


def test_parse_xml_ignores_leaves_nested_deeper_than_the_limit() -> None:
    deep = "<a>" * (MAX_NESTING + 1) + "deep" + "</a>" * (MAX_NESTING + 1)
    shallow = "<a>" * MAX_NESTING + "shallow" + "</a>" * MAX_NESTING
    body = f"<xml><T>{deep}</T><U>{shallow}</U></xml>".encode()
    assert parse_xml(body, max_bytes=LIMIT) == {"U." + ".".join("a" * MAX_NESTING): "shallow"}


def test_parse_xml_survives_nesting_thousands_deep() -> None:
    depth = 9000
    body = b"<xml><Deep>" + b"<a>" * depth + b"</a>" * depth + b"</Deep><K>v</K></xml>"
    assert len(body) <= LIMIT
    assert parse_xml(body, max_bytes=LIMIT) == {"K": "v"}


def test_parse_xml_accepts_a_body_of_exactly_max_bytes() -> None:
    assert parse_xml(TEXT_MESSAGE, max_bytes=len(TEXT_MESSAGE))["MsgType"] == "text"


def test_parse_xml_rejects_a_body_over_max_bytes_before_parsing() -> None:
    with pytest.raises(BadRequest, match="larger than"):
        parse_xml(TEXT_MESSAGE, max_bytes=len(TEXT_MESSAGE) - 1)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml at all",
        b"<xml><Content>unclosed</xml>",
        b"<xml><A>1</A></xml><xml/>",
        b"\xff\xfe<xml/>",
        b"<xml><A>\xc3\x28</A></xml>",  # invalid UTF-8
    ],
)
def test_parse_xml_rejects_malformed_bodies(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_xml(body, max_bytes=LIMIT)


def test_parse_xml_error_does_not_echo_the_body() -> None:
    body = b"<xml><Content>secret-marker-42</Content><oops></xml>"
    with pytest.raises(BadRequest) as caught:
        parse_xml(body, max_bytes=LIMIT)
    assert "secret-marker-42" not in str(caught.value)
    assert caught.value.__suppress_context__


def test_parse_xml_refuses_an_internal_entity_instead_of_expanding_it() -> None:
    # Plain ElementTree would return {"A": "expanded"}: this proves the DTD is refused.
    body = b'<!DOCTYPE xml [<!ENTITY e "expanded">]><xml><A>&e;</A></xml>'
    with pytest.raises(BadRequest):
        parse_xml(body, max_bytes=LIMIT)


def test_parse_xml_refuses_a_billion_laughs_bomb() -> None:
    entities = "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' if i else '<!ENTITY l0 "ha">' for i in range(10)
    )
    body = f"<!DOCTYPE xml [{entities}]><xml><A>&l9;</A></xml>".encode()
    with pytest.raises(BadRequest):
        parse_xml(body, max_bytes=LIMIT)


def test_parse_xml_refuses_an_external_entity() -> None:
    body = b'<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/hostname">]><xml><A>&x;</A></xml>'
    with pytest.raises(BadRequest):
        parse_xml(body, max_bytes=LIMIT)


def test_parse_xml_refuses_any_doctype() -> None:
    with pytest.raises(BadRequest):
        parse_xml(b"<!DOCTYPE xml><xml><A>1</A></xml>", max_bytes=LIMIT)


def test_parse_xml_requires_an_xml_root() -> None:
    with pytest.raises(BadRequest, match="root"):
        parse_xml(b"<message><A>1</A></message>", max_bytes=LIMIT)


def test_parse_xml_refuses_a_repeated_top_level_field() -> None:
    body = b"<xml><Encrypt>one</Encrypt><Encrypt>two</Encrypt></xml>"
    with pytest.raises(BadRequest, match="repeats"):
        parse_xml(body, max_bytes=LIMIT)


def test_parse_xml_refuses_a_repeated_top_level_field_that_has_children() -> None:
    body = b"<xml><Info><A>1</A></Info><Info><B>2</B></Info></xml>"
    with pytest.raises(BadRequest, match="repeats"):
        parse_xml(body, max_bytes=LIMIT)


def test_parse_xml_keeps_only_the_text_before_a_leaf_s_parent_had_children() -> None:
    # Mixed content: text around a child belongs to no field; the leaf below it does.
    body = b"<xml><Info>before<A>1</A>after</Info><B>  spaced  </B></xml>"
    assert parse_xml(body, max_bytes=LIMIT) == {"Info.A": "1", "B": "  spaced  "}


def test_parse_xml_joins_a_leaf_s_text_split_across_cdata_sections_and_references() -> None:
    body = b"<xml><C><![CDATA[a]]]]><![CDATA[>b]]>&#13;&amp;<![CDATA[c]]></C></xml>"
    assert parse_xml(body, max_bytes=LIMIT) == {"C": "a]]>b\r&c"}


def test_text_reply_matches_the_documented_layout() -> None:
    assert text_reply("oUser", "gh_abc", "你好", 1700000000) == (
        "<xml><ToUserName><![CDATA[oUser]]></ToUserName>"
        "<FromUserName><![CDATA[gh_abc]]></FromUserName>"
        "<CreateTime>1700000000</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        "<Content><![CDATA[你好]]></Content></xml>"
    )


def test_text_reply_parses_back_to_its_fields() -> None:
    xml = text_reply("oUser", "gh_abc", "line 1\nline 2", 1700000000)
    assert parse_xml(xml.encode(), max_bytes=LIMIT) == {
        "ToUserName": "oUser",
        "FromUserName": "gh_abc",
        "CreateTime": "1700000000",
        "MsgType": "text",
        "Content": "line 1\nline 2",
    }


def test_build_xml_nests_mappings_and_leaves_ints_bare() -> None:
    xml = build_xml({"MsgType": "image", "Image": {"MediaId": "m1"}, "CreateTime": 7})
    assert xml == (
        "<xml><MsgType><![CDATA[image]]></MsgType>"
        "<Image><MediaId><![CDATA[m1]]></MediaId></Image><CreateTime>7</CreateTime></xml>"
    )


def test_build_xml_splits_cdata_around_its_terminator() -> None:
    assert build_xml({"C": "a]]>b"}) == "<xml><C><![CDATA[a]]]]><![CDATA[>b]]></C></xml>"


TRICKY = [
    "",
    "]]>",
    "]]]]>",
    "a]]>b]]>c",
    "]]",
    "]>",
    "<![CDATA[x]]>",
    "</Content><MsgType>image</MsgType>",
    "&amp; &lt; & < > ' \"",
    "你好，世界",
    "😀👍🏽 family: 👨‍👩‍👧",
    "\r",
    "\r\n",
    "a\rb\r\nc\n",
    "]]>\r]]>",
    "\t tabs and  spaces  ",
    "\n\nleading and trailing newlines\n\n",
]


@pytest.mark.parametrize("value", TRICKY)
def test_any_string_round_trips_through_build_and_parse(value: str) -> None:
    xml = build_xml({"Content": value, "N": 1})
    assert parse_xml(xml.encode(), max_bytes=LIMIT) == {"Content": value, "N": "1"}


def test_random_strings_of_xml_metacharacters_round_trip() -> None:
    alphabet = ["]", ">", "<", "&", "[", "!", "\r", "\n", "\t", " ", "a", "中", "😀", "CDATA", ";"]
    rng = random.Random(20240521)
    for _ in range(2000):
        value = "".join(rng.choices(alphabet, k=rng.randint(0, 24)))
        xml = build_xml({"Content": value})
        assert parse_xml(xml.encode(), max_bytes=LIMIT) == {"Content": value}, value


def test_characters_xml_cannot_carry_become_replacement_characters() -> None:
    xml = build_xml({"Content": "a\x00b\x08c\x1fd\ufffee\ud800f"})
    assert parse_xml(xml.encode("utf-8"), max_bytes=LIMIT) == {
        "Content": "a\ufffdb\ufffdc\ufffdd\ufffde\ufffdf"
    }


@pytest.mark.parametrize("name", ["", "a b", "x><y", "1abc", "a:b", "名字", "A\n"])
def test_build_xml_refuses_names_that_are_not_plain_xml_names(name: str) -> None:
    with pytest.raises(ValueError, match="element name"):
        build_xml({name: "v"})


@pytest.mark.parametrize("value", [True, 1.5, None, b"bytes", ["list"]])
def test_build_xml_refuses_values_of_other_types(value: object) -> None:
    with pytest.raises(TypeError):
        build_xml({"V": value})  # type: ignore[dict-item]
