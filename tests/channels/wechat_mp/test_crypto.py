"""WeChat message crypto: official vectors, bad input, key rotation, interop with wechatpy."""

from __future__ import annotations

import base64

import pytest
from wechatpy.crypto import WeChatCrypto as WechatpyCrypto

from chatgate.channels.wechat_mp.crypto import WeChatCrypto
from chatgate.channels.wechat_mp.xml import parse_xml
from chatgate.errors import BadRequest, SignatureError

LIMIT = 64 * 1024

# Vectors A and A2 (spec §4): the official WXBizMsgCrypt sample.
A_TOKEN = "pamtest"
A_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
A_APPID = "wxb11529c136998cb6"
A_TIMESTAMP = "1409304348"
A_NONCE = "xxxxxx"
A_RANDOM16 = b"aaaabbbbccccdddd"
A_MSG = "我是中文abcd123"
A_ENCRYPT = (
    "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
)
A_SIGNATURE = "82c962d39941aa48552f90ef55aa323dc620cc10"

A2_MSG = (
    "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]></ToUserName>"
    "<FromUserName><![CDATA[gh_7f083739789a]]></FromUserName>"
    "<CreateTime>1407743423</CreateTime><MsgType><![CDATA[video]]></MsgType>"
    "<Video><MediaId><![CDATA[eYJ1MbwPRJtOvIEabaxHs7TX2D-HV71s79GUxqdUkjm6Gs2Ed1KF3ulAOA9H1xG0]]>"
    "</MediaId><Title><![CDATA[testCallBackReplyVideo]]></Title>"
    "<Description><![CDATA[testCallBackReplyVideo]]></Description></Video></xml>"
)
A2_ENCRYPT = (
    "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxlkup"
    "qcEcW7ZQweImX9+wLMa0GaUzpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5nQvF"
    "b3tYPKAlHF3rtTeayNf0QuM+UW/wM9enGIDIJHF7CLHiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQHQ04s"
    "q7KZI27OcqpQNSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrTmFQ44YfeEuZ+xRTQwr92vhA9Oxch"
    "WVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka042OlUb1/slTwo4RscuQ+RdxSGvDahxAJ"
    "6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqRs+iAcILvApYZckqmA7FNERspKA5f8GoJ9sv8xmGvZ9Yrf57c"
    "ExWtnX8aCMMaBropU/1k+hKP5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeOwofJb"
)
A2_SIGNATURE = "ea88b765074e41eb8c7a75b449db34fa2fd560d5"

# Vector B (spec §4): the official signature + decrypt sample.
B_TOKEN = "QDG6eK"
B_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
B_APPID = "wx5823bf96d3bd56c7"
B_TIMESTAMP = "1409659589"
B_NONCE = "263014780"
B_ENCRYPT = (
    "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
)
B_SIGNATURE = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
B_MSG = "1616140317555161061"

# A second key for rotation tests (43 letters and digits, like any EncodingAESKey).
NEW_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"


def a_crypto() -> WeChatCrypto:
    return WeChatCrypto(A_TOKEN, A_KEY, A_APPID)


def envelope(encrypt: str, to_user: str = "gh_7f083739789a") -> bytes:
    """A safe-mode POST body."""
    return (
        f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    ).encode()


def flip(encrypt: str, index: int) -> str:
    raw = bytearray(base64.b64decode(encrypt))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


# -- official vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize(("msg", "encrypt"), [(A_MSG, A_ENCRYPT), (A2_MSG, A2_ENCRYPT)])
def test_encrypt_with_fixed_random_reproduces_official_vectors(msg: str, encrypt: str) -> None:
    assert a_crypto().encrypt(msg, random16=A_RANDOM16) == encrypt


@pytest.mark.parametrize(("msg", "encrypt"), [(A_MSG, A_ENCRYPT), (A2_MSG, A2_ENCRYPT)])
def test_decrypt_recovers_official_vectors(msg: str, encrypt: str) -> None:
    assert a_crypto().decrypt(encrypt) == msg


@pytest.mark.parametrize(
    ("encrypt", "signature"), [(A_ENCRYPT, A_SIGNATURE), (A2_ENCRYPT, A2_SIGNATURE)]
)
def test_sign_reproduces_vector_msg_signatures(encrypt: str, signature: str) -> None:
    assert a_crypto().sign(A_TIMESTAMP, A_NONCE, encrypt) == signature


def test_decrypt_message_verifies_and_decrypts_vector_b() -> None:
    crypto = WeChatCrypto(B_TOKEN, B_KEY, B_APPID)
    decrypted = crypto.decrypt_message(
        envelope(B_ENCRYPT), msg_signature=B_SIGNATURE, timestamp=B_TIMESTAMP, nonce=B_NONCE
    )
    assert decrypted.xml == B_MSG
    assert decrypted.used_previous_key is False


def test_encrypt_reply_builds_the_official_envelope_for_vector_a() -> None:
    xml = a_crypto().encrypt_reply(A_MSG, timestamp=A_TIMESTAMP, nonce=A_NONCE, random16=A_RANDOM16)
    assert xml == (
        f"<xml><Encrypt><![CDATA[{A_ENCRYPT}]]></Encrypt>"
        f"<MsgSignature><![CDATA[{A_SIGNATURE}]]></MsgSignature>"
        f"<TimeStamp>{A_TIMESTAMP}</TimeStamp><Nonce><![CDATA[{A_NONCE}]]></Nonce></xml>"
    )


def test_encrypt_reply_keeps_a_non_canonical_timestamp_verbatim() -> None:
    crypto = a_crypto()
    xml = crypto.encrypt_reply("<xml/>", timestamp="0042", nonce="n")
    fields = parse_xml(xml.encode(), max_bytes=LIMIT)
    assert fields["TimeStamp"] == "0042"
    assert fields["MsgSignature"] == crypto.sign("0042", "n", fields["Encrypt"])


# -- round trips and randomness -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "a", "x" * 32, "我是中文，也有 emoji 😀 和符号 <&]]>", "长" * 3000],
)
def test_encrypt_then_decrypt_round_trips(text: str) -> None:
    crypto = a_crypto()
    assert crypto.decrypt(crypto.encrypt(text)) == text


def test_encrypt_uses_fresh_random_bytes_each_time() -> None:
    crypto = a_crypto()
    assert crypto.encrypt("same") != crypto.encrypt("same")


def test_encrypt_reply_round_trips_through_decrypt_message() -> None:
    crypto = a_crypto()
    reply = "<xml><Content><![CDATA[回复：好的]]></Content></xml>"
    envelope_xml = crypto.encrypt_reply(reply, timestamp="1700000000", nonce="abc")
    fields = parse_xml(envelope_xml.encode(), max_bytes=LIMIT)
    decrypted = crypto.decrypt_message(
        envelope(fields["Encrypt"]),
        msg_signature=fields["MsgSignature"],
        timestamp=fields["TimeStamp"],
        nonce=fields["Nonce"],
    )
    assert decrypted.xml == reply


# -- rejection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        A_KEY[:-1],  # 42 characters
        A_KEY + "H",  # 44 characters
        A_KEY[:-1] + "+",  # base64, but not a letter or digit
        A_KEY[:-1] + "=",
        A_KEY[:-1] + "é",
    ],
)
def test_constructor_rejects_a_malformed_encoding_aes_key(key: str) -> None:
    with pytest.raises(ValueError, match="EncodingAESKey"):
        WeChatCrypto(A_TOKEN, key, A_APPID)


def test_constructor_rejects_a_malformed_previous_key() -> None:
    with pytest.raises(ValueError, match="EncodingAESKey"):
        WeChatCrypto(A_TOKEN, A_KEY, A_APPID, previous_aes_key="short")


@pytest.mark.parametrize(("token", "appid"), [("", A_APPID), (A_TOKEN, "")])
def test_constructor_rejects_an_empty_token_or_appid(token: str, appid: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        WeChatCrypto(token, A_KEY, appid)


def test_repr_shows_no_secret() -> None:
    text = repr(WeChatCrypto(A_TOKEN, A_KEY, A_APPID, previous_aes_key=NEW_KEY))
    assert A_TOKEN not in text
    assert A_KEY not in text
    assert NEW_KEY not in text


def test_encrypt_rejects_a_random_prefix_that_is_not_16_bytes() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        a_crypto().encrypt("x", random16=b"short")


def test_decrypt_rejects_a_message_for_another_appid() -> None:
    other = WeChatCrypto(A_TOKEN, A_KEY, "wx0000000000000000")
    with pytest.raises(SignatureError, match="appid"):
        other.decrypt(A_ENCRYPT)


def test_decrypt_rejects_an_appid_that_is_only_a_prefix_of_ours() -> None:
    longer = WeChatCrypto(A_TOKEN, A_KEY, A_APPID + "x")
    with pytest.raises(SignatureError, match="appid"):
        longer.decrypt(A_ENCRYPT)


def test_decrypt_rejects_broken_padding_from_a_tampered_ciphertext() -> None:
    # Flipping the last byte of the second-to-last block flips the last padding byte.
    raw_length = len(base64.b64decode(A_ENCRYPT))
    with pytest.raises(SignatureError, match="padding"):
        a_crypto().decrypt(flip(A_ENCRYPT, raw_length - 17))


def test_decrypt_rejects_a_length_field_pointing_past_the_end() -> None:
    # Byte 0 of the first ciphertext block is XORed into byte 16: the top byte of the length.
    with pytest.raises(SignatureError, match="longer"):
        a_crypto().decrypt(flip(A_ENCRYPT, 0))


@pytest.mark.parametrize(
    ("encrypt", "reason"),
    [
        ("", "AES blocks"),
        ("not base64!", "base64"),
        ("中文", "base64"),
        (base64.b64encode(b"x" * 15).decode(), "AES blocks"),
        (base64.b64encode(base64.b64decode(A_ENCRYPT)[:-1]).decode(), "AES blocks"),
        (base64.b64encode(base64.b64decode(A_ENCRYPT)[:-16]).decode(), "padding"),
        (base64.b64encode(b"\x00" * 32).decode(), "padding"),
    ],
)
def test_decrypt_rejects_garbage_with_signature_error(encrypt: str, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        a_crypto().decrypt(encrypt)


def test_decrypt_rejects_text_under_another_key() -> None:
    with pytest.raises(SignatureError):
        WeChatCrypto(A_TOKEN, NEW_KEY, A_APPID).decrypt(A_ENCRYPT)


def test_decrypt_message_rejects_a_wrong_msg_signature() -> None:
    with pytest.raises(SignatureError, match="msg_signature"):
        a_crypto().decrypt_message(
            envelope(A_ENCRYPT), msg_signature=A2_SIGNATURE, timestamp=A_TIMESTAMP, nonce=A_NONCE
        )


def test_decrypt_message_rejects_the_url_signature_in_place_of_msg_signature() -> None:
    from chatgate.channels.wechat_mp.signature import sha1_signature

    url_signature = sha1_signature(A_TOKEN, A_TIMESTAMP, A_NONCE)
    with pytest.raises(SignatureError):
        a_crypto().decrypt_message(
            envelope(A_ENCRYPT), msg_signature=url_signature, timestamp=A_TIMESTAMP, nonce=A_NONCE
        )


@pytest.mark.parametrize(("timestamp", "nonce"), [("1409304349", A_NONCE), (A_TIMESTAMP, "x")])
def test_decrypt_message_rejects_a_replayed_signature_with_other_parameters(
    timestamp: str, nonce: str
) -> None:
    with pytest.raises(SignatureError):
        a_crypto().decrypt_message(
            envelope(A_ENCRYPT), msg_signature=A_SIGNATURE, timestamp=timestamp, nonce=nonce
        )


def test_decrypt_message_rejects_every_single_byte_tampering() -> None:
    crypto = a_crypto()
    for index in range(len(base64.b64decode(A_ENCRYPT))):
        with pytest.raises(SignatureError):
            crypto.decrypt_message(
                envelope(flip(A_ENCRYPT, index)),
                msg_signature=A_SIGNATURE,
                timestamp=A_TIMESTAMP,
                nonce=A_NONCE,
            )


def test_decrypt_message_reports_a_correctly_signed_message_for_another_appid() -> None:
    other = WeChatCrypto(A_TOKEN, A_KEY, "wx0000000000000000")
    with pytest.raises(SignatureError, match="appid"):
        other.decrypt_message(
            envelope(A_ENCRYPT), msg_signature=A_SIGNATURE, timestamp=A_TIMESTAMP, nonce=A_NONCE
        )


@pytest.mark.parametrize(
    "body",
    [
        b"<xml><ToUserName><![CDATA[gh_x]]></ToUserName></xml>",
        b"<xml><Encrypt></Encrypt></xml>",
    ],
)
def test_decrypt_message_without_encrypt_is_a_bad_request_not_a_signature_error(
    body: bytes,
) -> None:
    with pytest.raises(BadRequest) as caught:
        a_crypto().decrypt_message(
            body, msg_signature=A_SIGNATURE, timestamp=A_TIMESTAMP, nonce=A_NONCE
        )
    assert type(caught.value) is BadRequest


def test_decrypt_message_refuses_an_oversized_body() -> None:
    body = envelope(A_ENCRYPT)
    with pytest.raises(BadRequest, match="larger"):
        a_crypto().decrypt_message(
            body,
            msg_signature=A_SIGNATURE,
            timestamp=A_TIMESTAMP,
            nonce=A_NONCE,
            max_bytes=len(body) - 1,
        )


def test_decrypt_message_refuses_a_dtd_in_the_envelope() -> None:
    body = b'<!DOCTYPE xml [<!ENTITY e "x">]>' + envelope(A_ENCRYPT)
    with pytest.raises(BadRequest):
        a_crypto().decrypt_message(
            body, msg_signature=A_SIGNATURE, timestamp=A_TIMESTAMP, nonce=A_NONCE
        )


def test_decrypt_message_reads_a_compat_mode_body_with_plaintext_fields() -> None:
    body = (
        "<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>"
        "<FromUserName><![CDATA[oUser]]></FromUserName><CreateTime>1409304348</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[unauthenticated copy]]></Content>"
        f"<MsgId>1</MsgId><Encrypt><![CDATA[{A_ENCRYPT}]]></Encrypt></xml>"
    ).encode()
    decrypted = a_crypto().decrypt_message(
        body, msg_signature=A_SIGNATURE, timestamp=A_TIMESTAMP, nonce=A_NONCE
    )
    assert decrypted.xml == A_MSG


# -- key rotation -------------------------------------------------------------------------------


def signed_body(crypto: WeChatCrypto, text: str) -> tuple[bytes, str]:
    encrypt = crypto.encrypt(text)
    return envelope(encrypt), crypto.sign(A_TIMESTAMP, A_NONCE, encrypt)


def test_rotation_decrypts_a_message_under_the_previous_key_and_says_so() -> None:
    old = WeChatCrypto(A_TOKEN, A_KEY, A_APPID)
    rotated = WeChatCrypto(A_TOKEN, NEW_KEY, A_APPID, previous_aes_key=A_KEY)
    body, signature = signed_body(old, "<xml>old</xml>")
    decrypted = rotated.decrypt_message(
        body, msg_signature=signature, timestamp=A_TIMESTAMP, nonce=A_NONCE
    )
    assert decrypted.xml == "<xml>old</xml>"
    assert decrypted.used_previous_key is True


def test_rotation_replies_with_the_key_the_message_came_with() -> None:
    old = WeChatCrypto(A_TOKEN, A_KEY, A_APPID)
    new = WeChatCrypto(A_TOKEN, NEW_KEY, A_APPID)
    rotated = WeChatCrypto(A_TOKEN, NEW_KEY, A_APPID, previous_aes_key=A_KEY)
    body, signature = signed_body(old, "<xml>old</xml>")
    decrypted = rotated.decrypt_message(
        body, msg_signature=signature, timestamp=A_TIMESTAMP, nonce=A_NONCE
    )
    reply = decrypted.crypto.encrypt_reply("<xml>reply</xml>", timestamp="1", nonce="n")
    encrypt = parse_xml(reply.encode(), max_bytes=LIMIT)["Encrypt"]
    assert old.decrypt(encrypt) == "<xml>reply</xml>"
    with pytest.raises(SignatureError):
        new.decrypt(encrypt)


def test_rotation_prefers_the_current_key_for_current_messages_and_replies() -> None:
    old = WeChatCrypto(A_TOKEN, A_KEY, A_APPID)
    new = WeChatCrypto(A_TOKEN, NEW_KEY, A_APPID)
    rotated = WeChatCrypto(A_TOKEN, NEW_KEY, A_APPID, previous_aes_key=A_KEY)
    body, signature = signed_body(new, "<xml>new</xml>")
    decrypted = rotated.decrypt_message(
        body, msg_signature=signature, timestamp=A_TIMESTAMP, nonce=A_NONCE
    )
    assert decrypted.used_previous_key is False
    reply = decrypted.crypto.encrypt_reply("<xml>reply</xml>", timestamp="1", nonce="n")
    encrypt = parse_xml(reply.encode(), max_bytes=LIMIT)["Encrypt"]
    assert new.decrypt(encrypt) == "<xml>reply</xml>"
    with pytest.raises(SignatureError):
        old.decrypt(encrypt)


def test_without_a_previous_key_an_old_message_is_rejected() -> None:
    old = WeChatCrypto(A_TOKEN, A_KEY, A_APPID)
    new = WeChatCrypto(A_TOKEN, NEW_KEY, A_APPID)
    body, signature = signed_body(old, "<xml>old</xml>")
    with pytest.raises(SignatureError):
        new.decrypt_message(body, msg_signature=signature, timestamp=A_TIMESTAMP, nonce=A_NONCE)


def test_a_message_under_neither_key_is_rejected() -> None:
    stranger = WeChatCrypto(A_TOKEN, "0" * 43, A_APPID)
    rotated = WeChatCrypto(A_TOKEN, NEW_KEY, A_APPID, previous_aes_key=A_KEY)
    body, signature = signed_body(stranger, "<xml>?</xml>")
    with pytest.raises(SignatureError):
        rotated.decrypt_message(body, msg_signature=signature, timestamp=A_TIMESTAMP, nonce=A_NONCE)


def test_a_crypto_encrypts_pushes_with_the_current_key() -> None:
    rotated = WeChatCrypto(A_TOKEN, NEW_KEY, A_APPID, previous_aes_key=A_KEY)
    new = WeChatCrypto(A_TOKEN, NEW_KEY, A_APPID)
    assert new.decrypt(rotated.encrypt("push")) == "push"


# -- interop with wechatpy ----------------------------------------------------------------------


def test_wechatpy_decrypts_our_encrypted_reply() -> None:
    reply = "<xml><Content><![CDATA[你好 😀 ]]]]><![CDATA[>]]></Content></xml>"
    ours = a_crypto().encrypt_reply(reply, timestamp="1700000000", nonce="nonce42")
    fields = parse_xml(ours.encode(), max_bytes=LIMIT)
    theirs = WechatpyCrypto(A_TOKEN, A_KEY, A_APPID)
    assert (
        theirs.decrypt_message(ours, fields["MsgSignature"], fields["TimeStamp"], fields["Nonce"])
        == reply
    )


def test_we_decrypt_wechatpy_encrypted_messages() -> None:
    message = (
        "<xml><ToUserName><![CDATA[gh_abc]]></ToUserName><FromUserName><![CDATA[oUser]]>"
        "</FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        "<Content><![CDATA[来自 wechatpy]]></Content><MsgId>42</MsgId></xml>"
    )
    theirs = WechatpyCrypto(A_TOKEN, A_KEY, A_APPID)
    body = theirs.encrypt_message(message, "nonce42", "1700000000")
    signature = parse_xml(body.encode(), max_bytes=LIMIT)["MsgSignature"]
    decrypted = a_crypto().decrypt_message(
        body.encode(), msg_signature=signature, timestamp="1700000000", nonce="nonce42"
    )
    assert decrypted.xml == message
