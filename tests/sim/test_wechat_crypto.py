"""The simulator's own WeChat crypto against the spec's vectors and an independent SDK."""

from __future__ import annotations

import pytest
from wechatpy.crypto import WeChatCrypto

from chatgate.sim.wechat_crypto import (
    MessageCrypto,
    WeChatCryptoError,
    aes_key,
    decrypt,
    pad,
    sha1_signature,
    unpad,
)
from tests.sim.fake_gateway import fields_of

# Test vector A / A2 (official WXBizMsgCrypt sample, spec §4).
A_TOKEN = "pamtest"
A_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
A_APPID = "wxb11529c136998cb6"
A_TIMESTAMP = "1409304348"
A_NONCE = "xxxxxx"
A_RANDOM = b"aaaabbbbccccdddd"
A_ENCRYPT = (
    "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
)
A2_MSG = (
    "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]></ToUserName>"
    "<FromUserName><![CDATA[gh_7f083739789a]]></FromUserName><CreateTime>1407743423</CreateTime>"
    "<MsgType><![CDATA[video]]></MsgType><Video><MediaId><![CDATA[eYJ1MbwPRJtOvIEabaxHs7TX2D-HV"
    "71s79GUxqdUkjm6Gs2Ed1KF3ulAOA9H1xG0]]></MediaId><Title><![CDATA[testCallBackReplyVideo]]>"
    "</Title><Description><![CDATA[testCallBackReplyVideo]]></Description></Video></xml>"
)
A2_ENCRYPT = (
    "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxlk"
    "upqcEcW7ZQweImX9+wLMa0GaUzpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5"
    "nQvFb3tYPKAlHF3rtTeayNf0QuM+UW/wM9enGIDIJHF7CLHiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQ"
    "HQ04sq7KZI27OcqpQNSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrTmFQ44YfeEuZ+xRTQwr92vh"
    "A9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka042OlUb1/slTwo4RscuQ+RdxSG"
    "vDahxAJ6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqRs+iAcILvApYZckqmA7FNERspKA5f8GoJ9sv8xmGv"
    "Z9Yrf57cExWtnX8aCMMaBropU/1k+hKP5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeO"
    "wofJb"
)

# Test vector B (WXBizMsgCrypt verify-URL sample, spec §4).
B_TOKEN = "QDG6eK"
B_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
B_ID = "wx5823bf96d3bd56c7"
B_ENCRYPT = (
    "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
)


@pytest.mark.parametrize(
    ("timestamp", "nonce", "expected"),
    [
        ("1714037059", "486452656", "899cf89e464efb63f54ddac96b0a0a235f53aa78"),
        ("1714036504", "1514711492", "f464b24fc39322e44b38aa78f5edd27bd1441696"),
    ],
)
def test_url_signature_matches_the_official_examples(
    timestamp: str, nonce: str, expected: str
) -> None:
    assert sha1_signature("AAAAA", timestamp, nonce) == expected


def test_aes_key_decodes_vector_a_key() -> None:
    assert aes_key(A_KEY).hex() == (
        "69b71d79f8218a39259a7a29aabb2dbafc31cb3d35db7e39ebbf3d0010831051"
    )


def test_aes_key_rejects_a_key_of_the_wrong_length() -> None:
    with pytest.raises(WeChatCryptoError):
        aes_key(A_KEY[:-1])


def test_vector_a_encrypts_byte_for_byte_and_signs() -> None:
    crypto = MessageCrypto(A_TOKEN, A_KEY, A_APPID)
    encrypted = crypto.encrypt("我是中文abcd123", random16=A_RANDOM)
    assert encrypted == A_ENCRYPT
    assert crypto.msg_signature(A_TIMESTAMP, A_NONCE, encrypted) == (
        "82c962d39941aa48552f90ef55aa323dc620cc10"
    )
    assert crypto.decrypt(encrypted) == "我是中文abcd123"


def test_vector_a2_multi_block_message_encrypts_byte_for_byte() -> None:
    crypto = MessageCrypto(A_TOKEN, A_KEY, A_APPID)
    assert crypto.encrypt(A2_MSG, random16=A_RANDOM) == A2_ENCRYPT
    assert crypto.msg_signature(A_TIMESTAMP, A_NONCE, A2_ENCRYPT) == (
        "ea88b765074e41eb8c7a75b449db34fa2fd560d5"
    )
    assert crypto.decrypt(A2_ENCRYPT) == A2_MSG


def test_vector_b_signature_and_decryption() -> None:
    assert sha1_signature(B_TOKEN, "1409659589", "263014780", B_ENCRYPT) == (
        "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
    )
    opened = decrypt(aes_key(B_KEY), B_ENCRYPT)
    assert opened.random16 == b"c41b64491c2468d0"
    assert opened.message == b"1616140317555161061"
    assert opened.appid == B_ID


def test_decrypt_refuses_another_accounts_appid() -> None:
    crypto = MessageCrypto(B_TOKEN, B_KEY, "wx_someone_else")
    with pytest.raises(WeChatCryptoError, match="appid"):
        crypto.decrypt(B_ENCRYPT)


def test_pad_fills_to_32_bytes_and_adds_a_whole_block_when_aligned() -> None:
    assert pad(b"x" * 31) == b"x" * 31 + b"\x01"
    assert pad(b"x" * 32) == b"x" * 32 + b" " * 32
    assert unpad(pad(b"abc")) == b"abc"


def test_unpad_rejects_inconsistent_padding() -> None:
    with pytest.raises(WeChatCryptoError):
        unpad(b"x" * 29 + b"\x01\x02\x03")
    with pytest.raises(WeChatCryptoError):
        unpad(b"x" * 31 + b"\x21")


def test_reply_envelope_opens_with_wechatpy_and_back() -> None:
    ours = MessageCrypto(A_TOKEN, A_KEY, A_APPID)
    theirs = WeChatCrypto(A_TOKEN, A_KEY, A_APPID)
    envelope = ours.build_envelope("<xml><Content>你好</Content></xml>", "1700000000", "4242")
    signature = fields_of(envelope)["MsgSignature"]
    assert theirs.decrypt_message(envelope, signature, "1700000000", "4242") == (
        "<xml><Content>你好</Content></xml>"
    )
    sealed = theirs.encrypt_message("<xml><Content>回来</Content></xml>", "77", "1700000001")
    assert ours.open_envelope(sealed) == "<xml><Content>回来</Content></xml>"


def test_open_envelope_rejects_a_wrong_msg_signature() -> None:
    crypto = MessageCrypto(A_TOKEN, A_KEY, A_APPID)
    envelope = crypto.build_envelope("<xml/>", "1700000000", "4242")
    assert crypto.open_envelope(envelope) == "<xml/>"
    with pytest.raises(WeChatCryptoError, match="MsgSignature"):
        crypto.open_envelope(envelope.replace("4242", "4243"))
