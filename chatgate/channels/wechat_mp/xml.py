"""WeChat's ``<xml>`` bodies: safe parsing into flat fields, and CDATA-quoted reply building.

Parsing refuses DTDs, as defusedxml's ``forbid_dtd`` does, so an entity bomb or an external
entity is refused at the ``<!DOCTYPE`` before anything expands. Errors never echo the body.

``parse_xml`` returns the text of each child of ``<xml>``. A child that has children of its
own (``<ScanCodeInfo>``, ``<SendPicsInfo>``…) is flattened into dotted paths of its leaves,
e.g. ``ScanCodeInfo.ScanResult``; a repeated path (``SendPicsInfo.PicList.item.PicMd5Sum``)
keeps its first value, and leaves nested deeper than ``MAX_NESTING`` are ignored. Attributes
are ignored. A top-level field that appears twice makes the body ambiguous and is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NoReturn, TypeAlias
from xml.parsers import expat

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
    fields = _Fields()
    parser = expat.ParserCreate()
    parser.buffer_text = True  # one data callback per text run, not per line or CDATA piece
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.UnparsedEntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_dtd
    parser.StartElementHandler = fields.start
    parser.EndElementHandler = fields.end
    parser.CharacterDataHandler = fields.data
    try:
        parser.Parse(body, True)
    except (expat.ExpatError, _DtdRefused):
        raise BadRequest("XML body is malformed or declares a DTD or entities") from None
    if fields.root != "xml":
        raise BadRequest("XML root element is not <xml>")
    if fields.repeated:
        raise BadRequest("XML body repeats a field")
    return fields.found


class _DtdRefused(Exception):
    pass


def _refuse_dtd(*_: object) -> NoReturn:
    # The same refusals as defusedxml's (forbid_dtd, entities, external): with no DTD at all
    # there is nothing for an entity bomb or an external entity to be declared in.
    raise _DtdRefused


class _Open:
    """An element under ``<xml>`` being parsed: its dotted path, its text, whether it is a leaf."""

    __slots__ = ("leaf", "path", "text")

    def __init__(self, path: str) -> None:
        self.path = path
        self.text: list[str] = []
        self.leaf = True


class _Fields:
    """Expat handlers that write the flat fields as the elements close.

    By hand rather than defusedxml's ``fromstring``: that is the pure-Python ElementTree
    parser building a tree only to be flattened here, about three times the cost of these
    handlers, and parsing is on every webhook acknowledgement.
    """

    __slots__ = ("_depth", "_open", "_seen", "found", "repeated", "root")

    def __init__(self) -> None:
        self.found: dict[str, str] = {}
        self.root: str | None = None
        self.repeated = False
        self._seen: set[str] = set()  # the fields directly under <xml>
        self._depth = 0  # elements open, <xml> included
        self._open: list[_Open] = []  # those below <xml>, down to MAX_NESTING levels under it

    def start(self, tag: str, _attributes: object) -> None:
        depth, self._depth = self._depth, self._depth + 1
        if depth == 0:
            self.root = tag
        elif depth == 1:
            if tag in self._seen:
                self.repeated = True
            self._seen.add(tag)
            self._open.append(_Open(tag))
        elif depth <= MAX_NESTING + 1:
            parent = self._open[-1]
            parent.leaf = False
            self._open.append(_Open(f"{parent.path}.{tag}"))
        elif depth == MAX_NESTING + 2:
            self._open[-1].leaf = False  # too deep to keep: nor is its parent a leaf

    def data(self, text: str) -> None:
        if self._open and len(self._open) == self._depth - 1:
            top = self._open[-1]
            if top.leaf:
                top.text.append(text)

    def end(self, _tag: str) -> None:
        self._depth -= 1
        if not self._open or len(self._open) != self._depth:
            return  # <xml> itself, or an element too deep to keep
        done = self._open.pop()
        if done.leaf:
            self.found.setdefault(done.path, "".join(done.text))


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
