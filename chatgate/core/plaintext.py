"""Turn an LLM's markdown into plain text that reads well in a chat app that shows no markdown.

Parsed with markdown-it (CommonMark plus tables and strikethrough), then written back out:

- headings: 【text】 on their own line;
- emphasis, strong, strikethrough and inline-code markers dropped, their text kept (including
  the ``**注意：**这是`` pairs CommonMark leaves unclosed in Chinese text);
- bullet items as "• item", ordered items as "1. item" (numbering from the list's start);
  nested blocks are indented to line up under the item's text;
- links as "text (url)", or the url alone when the text is the url (autolinks too);
- images as "[图片] url";
- block quotes with every line prefixed "> ";
- fenced and indented code verbatim, without fences, with a blank line around it;
- tables as one "a | b | c" line per row, the header separator dropped;
- horizontal rules as a line of "—";
- raw HTML shown exactly as written (a chat app would not interpret it either).

Blocks keep the blank lines the author put between them (a list right under its lead-in line
stays right under it), but never more than one: longer runs of blank lines collapse. Trailing
whitespace is removed from every line and from the end. Text without markdown comes out as it
went in, apart from that, the blank-line collapsing and CommonMark's stripping of up to three
spaces of indentation. As in any markdown renderer, ``2*3*4`` reads as emphasis and loses its
asterisks.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

_MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])

_RULE = "—" * 10
_BULLET = "• "
_QUOTE = "> "
_IMAGE = "[图片]"
# CommonMark will not close "**注意：**这是" (a closing run after punctuation must be followed by
# whitespace or punctuation), which is how Chinese text is usually written; such pairs survive
# as literal text, so their markers are dropped here. "__" is left alone: left over, it is far
# more likely part of an identifier (my__var__name) than failed emphasis.
_UNCLOSED_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
# Code loses its fences, so blank lines are what sets it apart from the text around it.
_ALWAYS_SPACED = frozenset({"fence", "code_block"})


# Text with none of these has no markdown in it (no inline syntax, no line that could open a
# block), and what the parser would make of it is known without parsing: see ``_plain``.
# Conservative on purpose (a "-" that starts a line is most often not a list): all that a
# false alarm costs is the parse.
_INLINE_SYNTAX = re.compile(r"[*_`\[\]<&\\|~\r\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_BLOCK_START = re.compile(r"^(?:[^\S\n]|[-+=#>]|\d{1,9}[.)])", re.MULTILINE)


def markdown_to_text(md: str) -> str:
    """Plain text for ``md``: readable on a phone, with no markdown syntax left to puzzle over."""
    return _plain(md) if plain_text(md) else _rendered(md)


def plain_text(text: str) -> bool:
    """Whether ``text`` surely holds no markdown (``markdown_to_text`` then skips the parse)."""
    return not _INLINE_SYNTAX.search(text) and not _BLOCK_START.search(text)


def _rendered(md: str) -> str:
    """Parsed and written back out, block by block."""
    lines = md.splitlines()
    root = SyntaxTreeNode(_MD.parse(md))
    text = _Renderer(lines).blocks(root.children)
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def _plain(text: str) -> str:
    """What parsing and rendering make of text without markdown, at a fraction of the cost
    (the parse was most of the time a push spent cutting a short answer into parts):
    paragraphs as they are, lines right-stripped, runs of blank lines made one, none at
    either end."""
    out: list[str] = []
    blank = False
    for line in text.split("\n"):
        line = line.rstrip()
        if not line:
            blank = True
            continue
        if blank and out:
            out.append("")
        out.append(line)
        blank = False
    return "\n".join(out)


class _Renderer:
    """Writes block nodes as text; ``lines`` is the source, to see where blank lines were."""

    def __init__(self, lines: list[str]) -> None:
        self._lines = lines

    def blocks(self, nodes: list[SyntaxTreeNode]) -> str:
        out: list[str] = []
        previous: SyntaxTreeNode | None = None
        for node in nodes:
            text = self.block(node)
            if not text.strip():
                continue  # an empty heading or item must not leave a run of blank lines
            if previous is not None:
                out.append("\n\n" if self._blank_between(previous, node) else "\n")
            out.append(text)
            previous = node
        return "".join(out)

    def _blank_between(self, previous: SyntaxTreeNode, node: SyntaxTreeNode) -> bool:
        if previous.type in _ALWAYS_SPACED or node.type in _ALWAYS_SPACED:
            return True
        if node.map is None:
            return True
        # The line just above a block is blank when the author separated the two; inside a
        # quote or a list item that line still carries the container's ">" or indentation.
        above = node.map[0] - 1
        return 0 <= above < len(self._lines) and not self._lines[above].strip(" \t>")

    def block(self, node: SyntaxTreeNode) -> str:
        kind = node.type
        if kind in ("paragraph", "heading"):
            text = self.inlines(node.children)
            if kind == "heading":
                return f"【{text.strip()}】" if text.strip() else ""
            return text
        if kind == "bullet_list":
            return self._list(node, ordered=False)
        if kind == "ordered_list":
            return self._list(node, ordered=True)
        if kind == "blockquote":
            quoted = self.blocks(node.children)
            return "\n".join((_QUOTE + line).rstrip() for line in quoted.split("\n"))
        if kind in ("fence", "code_block", "html_block"):
            return node.content.rstrip("\n")
        if kind == "hr":
            return _RULE
        if kind == "table":
            return self._table(node)
        if kind == "inline":
            return self.inlines(node.children)
        # Anything a future parser rule adds: its text rather than nothing.
        return self.blocks(node.children) if node.children else node.content

    def _list(self, node: SyntaxTreeNode, *, ordered: bool) -> str:
        start = node.attrs.get("start", 1)
        number = start if isinstance(start, int) else 1
        delimiter = node.markup or "."
        items: list[str] = []
        previous: SyntaxTreeNode | None = None
        for item in node.children:
            marker = f"{number}{delimiter} " if ordered else _BULLET
            number += 1
            body = self.blocks(item.children)
            indent = " " * len(marker)
            lines = body.split("\n")
            text = (marker + lines[0]).rstrip() + "".join(
                "\n" + (indent + line if line.strip() else "") for line in lines[1:]
            )
            if previous is not None:
                items.append("\n\n" if self._blank_between(previous, item) else "\n")
            items.append(text)
            previous = item
        return "".join(items)

    def _table(self, node: SyntaxTreeNode) -> str:
        rows: list[str] = []
        for section in node.children:  # thead, tbody
            for row in section.children:
                cells = [self.inlines(cell.children).strip() for cell in row.children]
                rows.append(" | ".join(cells))
        return "\n".join(rows)

    def inlines(self, nodes: list[SyntaxTreeNode]) -> str:
        return "".join(self.inline(node) for node in nodes)

    def inline(self, node: SyntaxTreeNode) -> str:
        kind = node.type
        if kind == "text":
            return _UNCLOSED_STRONG.sub(r"\1", node.content)
        if kind in ("text_special", "code_inline", "html_inline"):
            return node.content
        if kind in ("softbreak", "hardbreak"):
            return "\n"
        if kind == "link":
            return self._link(node)
        if kind == "image":
            return f"{_IMAGE} {node.attrs.get('src', '')}".rstrip()
        # em, strong, s and anything else: the text without its markers.
        return self.inlines(node.children) if node.children else node.content

    def _link(self, node: SyntaxTreeNode) -> str:
        text = self.inlines(node.children).strip()
        href = str(node.attrs.get("href", ""))
        shown = _MD.normalizeLinkText(href)
        if not text or node.markup == "autolink" or text in (href, shown):
            return text or href
        if not href:
            return text
        return f"{text} ({href})"
