"""Model markdown to HTML that can neither run script nor load anything, for the pages.

Two independent layers, so a bug in one is caught by the other (and the pages' CSP is a
third):

1. markdown-it renders CommonMark (plus tables and strikethrough) with raw HTML *disabled*:
   ``<script>`` or ``<img onerror>`` written by the model comes out as escaped text. Its link
   validation already refuses ``javascript:``, ``vbscript:``, ``file:`` and ``data:`` URLs.
   Images are rendered as links (「[图片] alt」), so a page never fetches a URL the model chose.
2. nh3 (ammonia) cleans the result against an allow-list of tags, attributes and classes;
   links keep only absolute ``http``, ``https`` and ``mailto`` targets and get
   ``rel="noopener noreferrer nofollow"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

IMAGE_LABEL = "[图片]"

_ALIGNS = ("left", "center", "right")
_ALIGN_CLASSES = {f"align-{a}" for a in _ALIGNS}

_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s",
    "code", "pre", "blockquote", "ul", "ol", "li", "a",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
_CLASSES = {"a": {"image-link"}, "th": _ALIGN_CLASSES, "td": _ALIGN_CLASSES}
_SCHEMES = {"http", "https", "mailto"}

_CLEANER = nh3.Cleaner(
    tags=_TAGS,
    clean_content_tags={"script", "style"},
    attributes=_ATTRIBUTES,
    allowed_classes=_CLASSES,
    url_schemes=_SCHEMES,
    # A relative link would point into this gateway; the model has no business there.
    url_relative="deny",
    link_rel="noopener noreferrer nofollow",
)


def _image_as_link(
    self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    src = escapeHtml(str(token.attrGet("src") or ""))
    alt = self.renderInlineAsText(token.children or [], options, env).strip()
    label = escapeHtml(f"{IMAGE_LABEL} {alt}" if alt else IMAGE_LABEL)
    return f'<a class="image-link" href="{src}">{label}</a>'


def _cell_open(
    self: Any, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    # markdown-it aligns cells with inline styles, which the CSP forbids: use classes.
    token = tokens[idx]
    style = str(token.attrGet("style") or "")
    if style and token.attrs is not None:
        del token.attrs["style"]
        align = style.partition(":")[2].strip()
        if align in _ALIGNS:
            token.attrSet("class", f"align-{align}")
    return str(self.renderToken(tokens, idx, options, env))


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    md.add_render_rule("image", _image_as_link)
    md.add_render_rule("th_open", _cell_open)
    md.add_render_rule("td_open", _cell_open)
    return md


_MD = _markdown()


def sanitize(html: str) -> str:
    """Clean HTML against the pages' allow-list (the second layer; exposed for tests)."""
    return _CLEANER.clean(html)


def render_markdown(text: str) -> str:
    """Safe HTML for a model's markdown answer (possibly partial, still streaming)."""
    if not text:
        return ""
    return sanitize(_MD.render(text))
