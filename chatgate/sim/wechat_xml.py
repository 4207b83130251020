"""WeChat's flat `<xml>` documents: build them as WeChat does, parse replies safely."""

from __future__ import annotations

from collections.abc import Iterable
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

# WeChat writes these bare; every other value goes in CDATA.
NUMERIC_FIELDS = frozenset(
    {
        "CreateTime",
        "MsgId",
        "MsgDataId",
        "Idx",
        "Location_X",
        "Location_Y",
        "Scale",
        "Latitude",
        "Longitude",
        "Precision",
        "TimeStamp",
    }
)


class XmlError(ValueError):
    """Not a well-formed, safe `<xml>` document."""


def cdata(value: str) -> str:
    # "]]>" cannot appear inside one CDATA section, so split it across two.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def build(fields: Iterable[tuple[str, str]]) -> str:
    parts = []
    for name, value in fields:
        inner = value if name in NUMERIC_FIELDS else cdata(value)
        parts.append(f"<{name}>{inner}</{name}>")
    return "<xml>" + "".join(parts) + "</xml>"


def parse(body: str | bytes) -> Element:
    """Parse with defusedxml (no entities, no DTDs) and insist on an `<xml>` root."""
    try:
        root = SafeET.fromstring(body)
    except (ParseError, DefusedXmlException) as exc:
        raise XmlError(f"not well-formed XML: {exc}") from exc
    if not isinstance(root, Element) or root.tag != "xml":
        raise XmlError("root element is not <xml>")
    return root


def text_of(root: Element, path: str) -> str | None:
    """Text of the element at `path`, "" when empty, None when absent."""
    node = root.find(path)
    if node is None:
        return None
    return node.text or ""
