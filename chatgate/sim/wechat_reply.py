"""Read a gateway's passive reply the way WeChat does: what the user sees, or why it is refused."""

from __future__ import annotations

from typing import Literal
from xml.etree.ElementTree import Element

from chatgate.sim import wechat_xml
from chatgate.sim.wechat_crypto import MessageCrypto, WeChatCryptoError

EncryptMode = Literal["plain", "compat", "safe"]

# What the WeChat client shows when the account's server failed it.
SERVICE_UNAVAILABLE = "该公众号暂时无法提供服务，请稍后再试"

# Field reports agree WeChat drops longer passive texts; the exact limit is unconfirmed.
MAX_TEXT_BYTES = 2048


class BadReply(ValueError):
    """A reply WeChat would not show; the user sees SERVICE_UNAVAILABLE instead."""


def read_reply(
    body: bytes,
    *,
    user: str,
    account: str,
    mode: EncryptMode,
    crypto: MessageCrypto | None,
    max_text_bytes: int | None = MAX_TEXT_BYTES,
) -> str | None:
    """What the user sees for this 2xx body: None for "no reply", else the reply's text."""
    # Exactly these two mean "no reply"; an XML with empty Content is not one of them.
    if body in (b"", b"success"):
        return None
    root = _open(body, mode, crypto)
    _check_header(root, user=user, account=account)
    return _describe(root, max_text_bytes)


def _open(body: bytes, mode: EncryptMode, crypto: MessageCrypto | None) -> Element:
    try:
        root = wechat_xml.parse(body)
        if root.find("Encrypt") is None:
            if mode == "safe":
                raise BadReply("safe mode requires an encrypted reply")
            return root
        if mode == "plain" or crypto is None:
            raise BadReply("encrypted reply to a plaintext account")
        return wechat_xml.parse(crypto.open_envelope(body))
    except (wechat_xml.XmlError, WeChatCryptoError) as exc:
        raise BadReply(str(exc)) from exc


def _check_header(root: Element, *, user: str, account: str) -> None:
    # A reply addressed the wrong way round is a classic gateway bug; WeChat refuses it.
    to_user = wechat_xml.text_of(root, "ToUserName")
    if to_user != user:
        raise BadReply(f"ToUserName is {to_user!r}, expected the user {user!r}")
    from_user = wechat_xml.text_of(root, "FromUserName")
    if from_user != account:
        raise BadReply(f"FromUserName is {from_user!r}, expected the account {account!r}")
    create_time = (wechat_xml.text_of(root, "CreateTime") or "").strip()
    if not create_time.isdigit():
        raise BadReply(f"CreateTime {create_time!r} is not an integer")


def _required(root: Element, path: str) -> str:
    value = wechat_xml.text_of(root, path)
    if not value:
        raise BadReply(f"reply lacks {path}")
    return value


def _describe(root: Element, max_text_bytes: int | None) -> str:
    msg_type = wechat_xml.text_of(root, "MsgType")
    if msg_type == "text":
        content = _required(root, "Content")
        size = len(content.encode())
        if max_text_bytes is not None and size > max_text_bytes:
            raise BadReply(f"text reply is {size} bytes, over {max_text_bytes}")
        return content
    if msg_type == "image":
        return f"[image {_required(root, 'Image/MediaId')}]"
    if msg_type == "voice":
        return f"[voice {_required(root, 'Voice/MediaId')}]"
    if msg_type == "video":
        media_id = _required(root, "Video/MediaId")
        return f"[video {wechat_xml.text_of(root, 'Video/Title') or media_id}]"
    if msg_type == "music":
        _required(root, "Music/ThumbMediaId")
        return f"[music {wechat_xml.text_of(root, 'Music/Title') or ''}]"
    if msg_type == "news":
        title = _required(root, "Articles/item/Title")
        url = wechat_xml.text_of(root, "Articles/item/Url")
        return f"[news {title} {url}]" if url else f"[news {title}]"
    if msg_type == "transfer_customer_service":
        return "[transferred to customer service]"
    raise BadReply(f"unknown reply MsgType {msg_type!r}")
