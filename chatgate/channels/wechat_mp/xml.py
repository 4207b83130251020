"""WeChat's ``<xml>`` bodies: safe parsing into flat fields, and CDATA-quoted reply building.

Parsing goes through defusedxml with DTDs forbidden, so an entity bomb or an external entity
is refused at the ``<!DOCTYPE`` before anything expands. Errors never echo the body.

``parse_xml`` returns the text of each child of ``<xml>``. A child that has children of its
own (``<ScanCodeInfo>``, ``<SendPicsInfo>``…) is flattened into dotted paths of its leaves,
e.g. ``ScanCodeInfo.ScanResult``; a repeated path (``SendPicsInfo.PicList.item.PicMd5Sum``)
keeps its first value, and leaves nested deeper than ``MAX_NESTING`` are ignored. Attributes
are ignored. A top-level field that appears twice makes the body ambiguous and is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeAlias
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree
from defusedxml import DefusedXmlException

from chatgate.errors import BadRequest

XmlValue: TypeAlias = "str | int | Mapping[str, XmlValue]"

# Deepest real nesting is SendPicsInfo/PicList/item/PicMd5Sum; anything deeper is noise.
MAX_NESTING = 4

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
# Characters XML 1.0 cannot carry at all, not even as character references.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def parse_xml(body: bytes, *, max_bytes: int) -> dict[str, str]:
    """The fields of a WeChat ``<xml>`` body; ``BadRequest`` if it is too large or not one."""
    if len(body) > max_bytes:
        raise BadRequest(f"XML body is larger than {max_bytes} bytes")
    try:
        root = defusedxml.ElementTree.fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException):
        raise BadRequest("XML body is malformed or declares a DTD or entities") from None
    if root.tag != "xml":
        raise BadRequest("XML root element is not <xml>")
    fields: dict[str, str] = {}
    seen: set[str] = set()
    for child in root:
        if child.tag in seen:
            raise BadRequest("XML body repeats a field")
        seen.add(child.tag)
        if len(child) == 0:
            fields[child.tag] = child.text or ""
        else:
            _add_leaves(child, child.tag, 1, fields)
    return fields


def _add_leaves(element: Element, path: str, depth: int, into: dict[str, str]) -> None:
    for child in element:
        child_path = f"{path}.{child.tag}"
        if len(child) == 0:
            into.setdefault(child_path, child.text or "")
        elif depth < MAX_NESTING:
            _add_leaves(child, child_path, depth + 1, into)


def build_xml(fields: Mapping[str, XmlValue]) -> str:
    """``<xml>`` with one element per field: strings in CDATA, ints bare, mappings nested.

    Any string comes back exactly from ``parse_xml``, except characters XML 1.0 cannot carry
    (C0 controls other than tab, LF and CR; lone surrogates; U+FFFE, U+FFFF), which become
    U+FFFD rather than failing the reply. ``ValueError`` for a name that is not a plain XML
    name, ``TypeError`` for a value of another type.
    """
    return f"<xml>{_elements(fields)}</xml>"


def text_reply(to_user: str, from_user: str, content: str, create_time: int) -> str:
    """A passive text reply: ``to_user`` is the user's OpenID, ``from_user`` our ``gh_`` id."""
    return build_xml(
        {
            "ToUserName": to_user,
            "FromUserName": from_user,
            "CreateTime": create_time,
            "MsgType": "text",
            "Content": content,
        }
    )


def _elements(fields: Mapping[str, XmlValue]) -> str:
    parts: list[str] = []
    for name, value in fields.items():
        if not _NAME.match(name):
            raise ValueError(f"not a plain XML element name: {name!r}")
        parts.append(f"<{name}>{_content(value)}</{name}>")
    return "".join(parts)


def _content(value: XmlValue) -> str:
    if isinstance(value, bool):
        raise TypeError("XML field values are str, int or a mapping, not bool")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _cdata(value)
    if isinstance(value, Mapping):
        return _elements(value)
    raise TypeError(f"XML field values are str, int or a mapping, not {type(value).__name__}")


def _cdata(text: str) -> str:
    text = _NOT_XML_CHAR.sub("\ufffd", text)
    # A CDATA section cannot hold "]]>", and parsers turn a CR inside it into LF; so "]]>" is
    # split across two sections and each CR goes between sections as a character reference.
    return "&#13;".join(
        "<![CDATA[" + segment.replace("]]>", "]]]]><![CDATA[>") + "]]>"
        for segment in text.split("\r")
    )
